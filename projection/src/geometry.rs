//! ffmpeg 5.1 v360's maps from an output pixel to a position in the equirectangular source,
//! reproduced in its own single-precision arithmetic, operation for operation, so the values
//! here are the ones ffmpeg computes (its `libm` calls are the same `atan2f`, `asinf`, `tanf`).
//!
//! Conventions (ffmpeg's): +z front (the centre of the equirect frame), +x right, +y down. Each
//! plane is mapped on its own: a chroma plane is treated as an image of its own size, with its
//! own pixel centres and, for EAC, its own 2-pixel pads.
//!
//! The source side is 5.1's, found by probing ffmpeg 5.1.9 with 16-bit ramps (it differs from
//! older and newer releases): `u = (phi / pi + 1) * (W - 1) / 2`, `v = (theta / (pi/2) + 1) *
//! (H - 1) / 2`, so longitude -pi lands on the centre of column 0 and +pi on column W - 1, and
//! a bilinear sample never straddles the seam or the poles.

use std::f64::consts::FRAC_PI_2;

use crate::Layout;

/// A face index along one axis of the layout and the position across that face, as ffmpeg
/// computes them for one output column or row.
pub(crate) type Axis = (i32, f32);

/// [`PlaneGeometry::sample`] with every column's and row's [`Axis`] computed once (EAC's
/// `tanf` among them), for building maps.
pub(crate) struct Sampler {
    pub geometry: PlaneGeometry,
    columns: Vec<Axis>,
    rows: Vec<Axis>,
}

impl Sampler {
    pub fn new(geometry: PlaneGeometry) -> Sampler {
        Sampler {
            columns: (0..geometry.out_w).map(|i| geometry.column(i)).collect(),
            rows: (0..geometry.out_h).map(|j| geometry.row(j)).collect(),
            geometry,
        }
    }

    /// The same value as `geometry.sample(i, j)`.
    pub fn sample(&self, i: u32, j: u32) -> Sample {
        self.geometry
            .sample_at(self.columns[i as usize], self.rows[j as usize])
    }
}

/// One plane's mapping: an output plane of `out_w x out_h` read from a source plane of
/// `src_w x src_h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlaneGeometry {
    pub layout: Layout,
    pub out_w: u32,
    pub out_h: u32,
    pub src_w: u32,
    pub src_h: u32,
}

/// Where an output pixel reads the source, and on which side of the seam it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Source column, in `[0, src_w - 1]`.
    pub u: f32,
    /// Source row, in `[0, src_h - 1]`.
    pub v: f32,
    /// The sign bit of the direction's x: with `behind`, which side of the longitude seam.
    pub x_negative: bool,
    /// The direction points backwards (z < 0), where longitude wraps from +pi to -pi.
    pub behind: bool,
}

/// The cube directions, in ffmpeg's order of its `rludfb` face string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Right,
    Left,
    Up,
    Down,
    Front,
    Back,
}

/// c3x2's faces in frame order (ffmpeg's default `out_forder=rludfb`).
const C3X2_FACES: [Direction; 6] = [
    Direction::Right,
    Direction::Left,
    Direction::Up,
    Direction::Down,
    Direction::Front,
    Direction::Back,
];

/// Which smooth piece of the layout an output column (or row) is in: ffmpeg's face index along
/// that axis and, for EAC, whether the position is in a pad (extrapolated linearly) or inside
/// a face (equi-angular). The map from output to source is smooth within one piece.
pub(crate) type Piece = (i32, u8);

impl PlaneGeometry {
    /// The piece of output column `i` (the same for every row).
    pub fn column_piece(&self, i: u32) -> Piece {
        match self.layout {
            Layout::Cubemap3x2 => (cube_axis(i, self.out_w, 3).0, 0),
            Layout::Eac => {
                let (face, _, branch) = eac_u(i, self.out_w);
                (face, branch)
            }
        }
    }

    /// Output column `i`'s face column and position across the face (ffmpeg's `uf`).
    pub fn column(&self, i: u32) -> Axis {
        match self.layout {
            Layout::Cubemap3x2 => cube_axis(i, self.out_w, 3),
            Layout::Eac => {
                let (face, uf, _) = eac_u(i, self.out_w);
                (face, uf)
            }
        }
    }

    /// Output row `j`'s face row and position down the face (ffmpeg's `vf`).
    pub fn row(&self, j: u32) -> Axis {
        match self.layout {
            Layout::Cubemap3x2 => cube_axis(j, self.out_h, 2),
            Layout::Eac => {
                let (face, vf, _) = eac_v(j, self.out_h);
                (face, vf)
            }
        }
    }

    /// The direction ffmpeg computes for output pixel `(i, j)`: the face's vector, normalised,
    /// passed through the identity rotation and normalised again, as v360 does.
    #[cfg(test)]
    pub fn direction(&self, i: u32, j: u32) -> [f32; 3] {
        self.direction_at(self.column(i), self.row(j))
    }

    /// [`PlaneGeometry::direction`] from the pixel's column and row.
    fn direction_at(&self, (u_face, uf): Axis, (v_face, vf): Axis) -> [f32; 3] {
        let v = match self.layout {
            Layout::Cubemap3x2 => {
                // ffmpeg's cube_to_xyz.
                match C3X2_FACES[(u_face + 3 * v_face) as usize] {
                    Direction::Right => [1.0, vf, -uf],
                    Direction::Left => [-1.0, vf, uf],
                    Direction::Up => [uf, -1.0, vf],
                    Direction::Down => [uf, 1.0, -vf],
                    Direction::Front => [uf, vf, 1.0],
                    Direction::Back => [-uf, vf, -1.0],
                }
            }
            Layout::Eac => {
                // ffmpeg's eac_to_xyz: LEFT FRONT RIGHT over DOWN BACK UP, the bottom row
                // rotated (270, 90, 270 degrees).
                match u_face + 3 * v_face {
                    0 => [-1.0, vf, uf],
                    1 => [uf, vf, 1.0],
                    2 => [1.0, vf, -uf],
                    3 => [-vf, 1.0, -uf],
                    4 => [-vf, -uf, -1.0],
                    _ => [-vf, -1.0, uf],
                }
            }
        };
        let v = normalize(v);
        // v360 rotates by its yaw/pitch/roll matrix (the identity here, computed as such) and
        // normalises once more; the float operations are kept so the rounding is the same.
        let rotated = [
            v[0] * 1.0 + v[1] * 0.0 + v[2] * 0.0,
            v[0] * 0.0 + v[1] * 1.0 + v[2] * 0.0,
            v[0] * 0.0 + v[1] * 0.0 + v[2] * 1.0,
        ];
        normalize(rotated)
    }

    /// The source position ffmpeg 5.1 samples for output pixel `(i, j)`.
    pub fn sample(&self, i: u32, j: u32) -> Sample {
        self.sample_at(self.column(i), self.row(j))
    }

    /// [`PlaneGeometry::sample`] from the pixel's column and row (see [`Sampler`]).
    pub fn sample_at(&self, column: Axis, row: Axis) -> Sample {
        let d = self.direction_at(column, row);
        let phi = d[0].atan2(d[2]);
        let theta = d[1].asin();
        // In single precision throughout, with float constants: this order of operations
        // reproduces ffmpeg 5.1.9's output bit for bit (checked in tests/ffmpeg.rs).
        let u = (phi / std::f32::consts::PI + 1.0) * (self.src_w - 1) as f32 / 2.0;
        let v = (theta / std::f32::consts::FRAC_PI_2 + 1.0) * (self.src_h - 1) as f32 / 2.0;
        Sample {
            u,
            v,
            x_negative: d[0].is_sign_negative(),
            behind: d[2] < 0.0,
        }
    }
}

/// `sqrtf` of the sum of squares, then a division per component, as ffmpeg's
/// `normalize_vector`.
fn normalize(v: [f32; 3]) -> [f32; 3] {
    let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    [v[0] / norm, v[1] / norm, v[2] / norm]
}

/// c3x2 along one axis (`faces` faces over `size` pixels): the face index and the position in
/// the face in `(-1, 1)`, as ffmpeg's `cube3x2_to_xyz` (faces start at `ceil(k * size/faces)`).
fn cube_axis(i: u32, size: u32, faces: u32) -> (i32, f32) {
    let e = size as f32 / faces as f32;
    let face = (i as f32 / e).floor() as i32;
    let shift = (e * face as f32).ceil() as i32;
    let ei = (e * (face + 1) as f32).ceil() as i32 - shift;
    let f = 2.0 * ((i as i32 - shift) as f32 + 0.5) / ei as f32 - 1.0;
    (face, f)
}

/// EAC's 2-pixel pad, in pixels of the plane being mapped.
const EAC_PAD: f32 = 2.0;

/// EAC's horizontal axis, as ffmpeg's `eac_to_xyz`: the face column, the cube coordinate and
/// the piece (0: left pad, 1: inside a face, 2: right pad).
fn eac_u(i: u32, width: u32) -> (i32, f32, u8) {
    let pad = EAC_PAD / width as f32;
    let mut uf = (i as f32 + 0.5) / width as f32;
    uf = 3.0 * (uf - pad) / (1.0 - 2.0 * pad);
    let face;
    if uf < 0.0 {
        face = 0;
        uf -= 0.5;
    } else if uf >= 3.0 {
        face = 2;
        uf -= 2.5;
    } else {
        face = uf.floor() as i32;
        uf = uf % 1.0 - 0.5;
    }
    let (value, branch) = eac_stretch(uf);
    (
        face,
        value,
        if branch {
            1
        } else if uf < 0.0 {
            0
        } else {
            2
        },
    )
}

/// EAC's vertical axis: the face row (0 top, 1 bottom), the cube coordinate and the piece
/// (0: pad above, 1: inside a face, 2: pad below).
fn eac_v(j: u32, height: u32) -> (i32, f32, u8) {
    let pad = EAC_PAD / height as f32;
    let mut vf = (j as f32 + 0.5) / height as f32;
    let face = (vf * 2.0).floor() as i32;
    vf = (vf - pad - 0.5 * face as f32) / (0.5 - 2.0 * pad) - 0.5;
    let (value, branch) = eac_stretch(vf);
    (
        face,
        value,
        if branch {
            1
        } else if vf < 0.0 {
            0
        } else {
            2
        },
    )
}

/// Inside a face (`t` in `[-0.5, 0.5)`) the equi-angular `tan(pi/2 * t)`; in the pads the
/// straight line `2t` (ffmpeg: "padding pixels seem not to be stretched with tangent").
/// Returns the value and whether `t` was inside the face.
fn eac_stretch(t: f32) -> (f32, bool) {
    if (-0.5..0.5).contains(&t) {
        // C: `tanf(M_PI_2 * t)`, the product in double, rounded to float for tanf.
        (((FRAC_PI_2 * f64::from(t)) as f32).tan(), true)
    } else {
        (2.0 * t, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(layout: Layout, out_w: u32, out_h: u32) -> PlaneGeometry {
        PlaneGeometry {
            layout,
            out_w,
            out_h,
            src_w: 512,
            src_h: 256,
        }
    }

    #[test]
    fn c3x2_face_centres_look_along_the_axes() {
        let g = geo(Layout::Cubemap3x2, 384, 256);
        // Face centres, between the two middle pixels of 128x128 faces: average the four.
        let centre = |fx: u32, fy: u32| {
            let mut s = [0.0f32; 3];
            for (di, dj) in [(63, 63), (64, 63), (63, 64), (64, 64)] {
                let d = g.direction(fx * 128 + di, fy * 128 + dj);
                for (acc, c) in s.iter_mut().zip(d) {
                    *acc += c / 4.0;
                }
            }
            s.map(|c| c.round() as i32)
        };
        assert_eq!(centre(0, 0), [1, 0, 0], "right");
        assert_eq!(centre(1, 0), [-1, 0, 0], "left");
        assert_eq!(centre(2, 0), [0, -1, 0], "up");
        assert_eq!(centre(0, 1), [0, 1, 0], "down");
        assert_eq!(centre(1, 1), [0, 0, 1], "front");
        assert_eq!(centre(2, 1), [0, 0, -1], "back");
    }

    #[test]
    fn eac_face_centres_look_along_the_axes() {
        let g = geo(Layout::Eac, 512, 288);
        let dir = |i, j| g.direction(i, j).map(|c| c.round() as i32);
        // Face centres: columns 2 + (k + 0.5) * 508/3, rows 2 + 70 and 146 + 70.
        assert_eq!(dir(87, 72), [-1, 0, 0], "left");
        assert_eq!(dir(256, 72), [0, 0, 1], "front");
        assert_eq!(dir(425, 72), [1, 0, 0], "right");
        assert_eq!(dir(87, 216), [0, 1, 0], "down");
        assert_eq!(dir(256, 216), [0, 0, -1], "back");
        assert_eq!(dir(425, 216), [0, -1, 0], "up");
    }

    #[test]
    fn source_positions_span_the_frame_without_wrapping() {
        let g = geo(Layout::Cubemap3x2, 384, 256);
        for j in 0..256 {
            for i in 0..384 {
                let s = g.sample(i, j);
                assert!((0.0..=511.0).contains(&s.u), "u {} at {i},{j}", s.u);
                assert!((0.0..=255.0).contains(&s.v), "v {} at {i},{j}", s.v);
            }
        }
        // The front face's centre reads the middle of the source.
        let s = g.sample(192, 192);
        assert!(
            (s.u - 255.5).abs() < 0.7 && (s.v - 127.5).abs() < 0.7,
            "{s:?}"
        );
    }

    #[test]
    fn eac_pieces_split_pads_from_faces() {
        let g = geo(Layout::Eac, 512, 288);
        assert_eq!(g.column_piece(0), (0, 0));
        assert_eq!(g.column_piece(1), (0, 0));
        assert_eq!(g.column_piece(2), (0, 1));
        assert_eq!(g.column_piece(509), (2, 1));
        assert_eq!(g.column_piece(510), (2, 2));
        assert_eq!(g.column_piece(511), (2, 2));
        let rows: Vec<_> = [0, 1, 2, 141, 142, 143, 144, 145, 146, 285, 286, 287]
            .iter()
            .map(|&j| {
                let (f, _, b) = eac_v(j, 288);
                (f, b)
            })
            .collect();
        assert_eq!(
            rows,
            [
                (0, 0),
                (0, 0),
                (0, 1),
                (0, 1),
                (0, 2),
                (0, 2),
                (1, 0),
                (1, 0),
                (1, 1),
                (1, 1),
                (1, 2),
                (1, 2)
            ]
        );
    }
}
