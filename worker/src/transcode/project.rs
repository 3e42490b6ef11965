//! `spherecastproject`: a GStreamer video filter, written in Rust and registered by the
//! worker, that projects equirectangular I420/NV12 frames to a cubemap layout with the
//! [`projection`] kernel.
//!
//! ```text
//! ... ! video/x-raw,format=I420,width=3840,height=1920 ! spherecastproject layout=eac width=3840 height=2160 ! x264enc ! ...
//! ```
//!
//! The output size is fixed by the `width` and `height` properties (0: ffmpeg's default size
//! for the layout); everything else in the caps (format, frame rate, colorimetry) passes
//! through. A source that is not 2:1 fails negotiation with the kernel's reason.

use std::sync::{LazyLock, Mutex};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;

/// The element's factory name.
pub const ELEMENT: &str = "spherecastproject";

glib::wrapper! {
    /// The `spherecastproject` element.
    pub struct ProjectFilter(ObjectSubclass<imp::ProjectFilter>)
        @extends gst_video::VideoFilter, gstreamer_base::BaseTransform, gst::Element, gst::Object;
}

/// Registers `spherecastproject` with GStreamer (once per process; later calls do nothing).
pub fn register() -> Result<(), glib::BoolError> {
    static REGISTERED: LazyLock<Result<(), String>> = LazyLock::new(|| {
        gst::Element::register(None, ELEMENT, gst::Rank::NONE, ProjectFilter::static_type())
            .map_err(|err| err.to_string())
    });
    REGISTERED
        .clone()
        .map_err(|message| glib::bool_error!("cannot register {ELEMENT}: {message}"))
}

mod imp {
    use gst::subclass::prelude::*;
    use gst_video::prelude::*;
    use gst_video::subclass::prelude::*;
    use gstreamer_base::subclass::BaseTransformMode;
    use projection::{Frame, FrameMut, Interp, Layout, PixelFormat, Projector};

    use super::*;

    static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
        gst::DebugCategory::new(
            super::ELEMENT,
            gst::DebugColorFlags::empty(),
            Some("Spherecast equirectangular to cubemap projection"),
        )
    });

    #[derive(Debug, Clone, Copy)]
    struct Settings {
        layout: Layout,
        width: u32,
        height: u32,
        threads: u32,
    }

    impl Default for Settings {
        fn default() -> Self {
            Settings {
                layout: Layout::Eac,
                width: 0,
                height: 0,
                threads: 1,
            }
        }
    }

    #[derive(Default)]
    pub struct ProjectFilter {
        settings: Mutex<Settings>,
        projector: Mutex<Option<Projector>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for ProjectFilter {
        const NAME: &'static str = "SpherecastProject";
        type Type = super::ProjectFilter;
        type ParentType = gst_video::VideoFilter;
    }

    fn parse_layout(name: &str) -> Option<Layout> {
        match name {
            "eac" => Some(Layout::Eac),
            "c3x2" => Some(Layout::Cubemap3x2),
            _ => None,
        }
    }

    impl ObjectImpl for ProjectFilter {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                vec![
                    glib::ParamSpecString::builder("layout")
                        .nick("Layout")
                        .blurb("Output layout, by ffmpeg's name: eac or c3x2")
                        .default_value(Some("eac"))
                        .build(),
                    glib::ParamSpecUInt::builder("width")
                        .nick("Width")
                        .blurb("Output width (0: ffmpeg's default for the layout)")
                        .maximum(projection::MAX_SIDE)
                        .build(),
                    glib::ParamSpecUInt::builder("height")
                        .nick("Height")
                        .blurb("Output height (0: ffmpeg's default for the layout)")
                        .maximum(projection::MAX_SIDE)
                        .build(),
                    glib::ParamSpecUInt::builder("threads")
                        .nick("Threads")
                        .blurb("Threads projecting each frame")
                        .minimum(1)
                        .maximum(64)
                        .default_value(1)
                        .build(),
                ]
            });
            PROPERTIES.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            let mut settings = self.settings.lock().expect("settings lock");
            match pspec.name() {
                "layout" => {
                    let name: Option<String> = value.get().expect("type checked upstream");
                    match name.as_deref().and_then(parse_layout) {
                        Some(layout) => settings.layout = layout,
                        None => gst::error!(
                            CAT,
                            imp = self,
                            "Unknown layout {name:?}: use eac or c3x2; keeping {}",
                            settings.layout
                        ),
                    }
                }
                "width" => settings.width = value.get().expect("type checked upstream"),
                "height" => settings.height = value.get().expect("type checked upstream"),
                "threads" => settings.threads = value.get().expect("type checked upstream"),
                other => unreachable!("no property {other}"),
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            let settings = self.settings.lock().expect("settings lock");
            match pspec.name() {
                "layout" => settings.layout.ffmpeg_name().to_value(),
                "width" => settings.width.to_value(),
                "height" => settings.height.to_value(),
                "threads" => settings.threads.to_value(),
                other => unreachable!("no property {other}"),
            }
        }
    }

    impl GstObjectImpl for ProjectFilter {}

    impl ElementImpl for ProjectFilter {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "Spherecast 360 projection",
                    "Filter/Converter/Video",
                    "Projects equirectangular 360 video to ffmpeg's cubemap 3x2 or EAC layout",
                    "Spherecast",
                )
            });
            Some(&*METADATA)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                let caps = gst_video::VideoCapsBuilder::new()
                    .format_list([gst_video::VideoFormat::I420, gst_video::VideoFormat::Nv12])
                    .build();
                vec![
                    gst::PadTemplate::new(
                        "src",
                        gst::PadDirection::Src,
                        gst::PadPresence::Always,
                        &caps,
                    )
                    .expect("src pad template"),
                    gst::PadTemplate::new(
                        "sink",
                        gst::PadDirection::Sink,
                        gst::PadPresence::Always,
                        &caps,
                    )
                    .expect("sink pad template"),
                ]
            });
            TEMPLATES.as_ref()
        }
    }

    impl BaseTransformImpl for ProjectFilter {
        const MODE: BaseTransformMode = BaseTransformMode::NeverInPlace;
        const PASSTHROUGH_ON_SAME_CAPS: bool = false;
        const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

        fn transform_caps(
            &self,
            direction: gst::PadDirection,
            caps: &gst::Caps,
            filter: Option<&gst::Caps>,
        ) -> Option<gst::Caps> {
            let settings = *self.settings.lock().expect("settings lock");
            let mut other = caps.clone();
            for s in other.make_mut().iter_mut() {
                match direction {
                    // Sink caps to src caps: the configured output size.
                    gst::PadDirection::Sink => {
                        let fixed = (settings.width > 0 && settings.height > 0).then_some(());
                        let input = (s.get::<i32>("width").ok(), s.get::<i32>("height").ok());
                        let size = match (fixed, input) {
                            (Some(()), _) => Some((settings.width, settings.height)),
                            (None, (Some(w), Some(h))) if w > 0 && h > 0 => {
                                Some(settings.layout.default_output_size(w as u32, h as u32))
                            }
                            _ => None,
                        };
                        match size {
                            Some((w, h)) => {
                                s.set("width", w as i32);
                                s.set("height", h as i32);
                            }
                            None => {
                                s.set("width", gst::IntRange::new(1, i32::MAX));
                                s.set("height", gst::IntRange::new(1, i32::MAX));
                            }
                        }
                    }
                    // Src caps to sink caps: any equirect size.
                    _ => {
                        s.set("width", gst::IntRange::new(1, i32::MAX));
                        s.set("height", gst::IntRange::new(1, i32::MAX));
                    }
                }
                s.set("pixel-aspect-ratio", gst::Fraction::new(1, 1));
            }
            gst::debug!(CAT, imp = self, "{direction:?}: {caps} -> {other}");
            Some(match filter {
                Some(filter) => filter.intersect_with_mode(&other, gst::CapsIntersectMode::First),
                None => other,
            })
        }
    }

    impl VideoFilterImpl for ProjectFilter {
        fn set_info(
            &self,
            _incaps: &gst::Caps,
            in_info: &gst_video::VideoInfo,
            _outcaps: &gst::Caps,
            out_info: &gst_video::VideoInfo,
        ) -> Result<(), gst::LoggableError> {
            let settings = *self.settings.lock().expect("settings lock");
            let format = match in_info.format() {
                gst_video::VideoFormat::I420 => PixelFormat::I420,
                gst_video::VideoFormat::Nv12 => PixelFormat::Nv12,
                other => {
                    return Err(gst::loggable_error!(CAT, "unsupported format {other:?}"));
                }
            };
            let projector = Projector::new(
                settings.layout,
                (in_info.width(), in_info.height()),
                Some((out_info.width(), out_info.height())),
                Interp::Bilinear,
                format,
                settings.threads as usize,
            )
            .map_err(|err| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    [
                        "cannot project {}x{} to {} {}x{}: {err}",
                        in_info.width(),
                        in_info.height(),
                        settings.layout,
                        out_info.width(),
                        out_info.height()
                    ]
                );
                gst::loggable_error!(CAT, "cannot project: {err}")
            })?;
            gst::info!(
                CAT,
                imp = self,
                "Projecting {}x{} to {} {}x{} on {} threads",
                in_info.width(),
                in_info.height(),
                settings.layout,
                out_info.width(),
                out_info.height(),
                settings.threads
            );
            *self.projector.lock().expect("projector lock") = Some(projector);
            Ok(())
        }

        fn transform_frame(
            &self,
            inframe: &gst_video::VideoFrameRef<&gst::BufferRef>,
            outframe: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
        ) -> Result<gst::FlowSuccess, gst::FlowError> {
            let threads = self.settings.lock().expect("settings lock").threads as usize;
            let guard = self.projector.lock().expect("projector lock");
            let projector = guard.as_ref().ok_or(gst::FlowError::NotNegotiated)?;
            let stride = |frame_stride: &[i32], plane: usize| frame_stride[plane].max(0) as usize;
            let in_strides = inframe.plane_stride();
            let plane = |i: u32| inframe.plane_data(i).map_err(|_| gst::FlowError::Error);
            let src = match projector.format() {
                PixelFormat::I420 => Frame::i420(
                    plane(0)?,
                    stride(in_strides, 0),
                    plane(1)?,
                    stride(in_strides, 1),
                    plane(2)?,
                    stride(in_strides, 2),
                ),
                PixelFormat::Nv12 => Frame::nv12(
                    plane(0)?,
                    stride(in_strides, 0),
                    plane(1)?,
                    stride(in_strides, 1),
                ),
            };
            let out_strides: Vec<usize> = (0..3)
                .map(|i| {
                    outframe
                        .plane_stride()
                        .get(i)
                        .map_or(0, |s| (*s).max(0) as usize)
                })
                .collect();
            let [y, c0, c1, _] = outframe.planes_data_mut();
            let result = match projector.format() {
                PixelFormat::I420 => projector.project(
                    &src,
                    &mut FrameMut::i420(y, out_strides[0], c0, out_strides[1], c1, out_strides[2]),
                    threads,
                ),
                PixelFormat::Nv12 => projector.project(
                    &src,
                    &mut FrameMut::nv12(y, out_strides[0], c0, out_strides[1]),
                    threads,
                ),
            };
            result.map_err(|err| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ["projection failed: {err}"]
                );
                gst::FlowError::Error
            })?;
            Ok(gst::FlowSuccess::Ok)
        }
    }
}
