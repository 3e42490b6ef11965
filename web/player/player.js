// Spherecast player: plays an HLS URL (`?url=`) flat or as 360 video. 360 modes draw the video
// with one WebGL fragment shader that turns each screen pixel into a view direction and looks
// that direction up in the frame, using the same face layouts ffmpeg's v360 filter (and the
// Spherecast worker) writes:
//   equirect  longitude across, latitude down; the frame's centre is straight ahead.
//   c3x2      cubemap 3x2, faces RIGHT LEFT UP / DOWN FRONT BACK, each upright as seen from
//             inside the sphere.
//   eac       equi-angular cubemap (YouTube's): LEFT FRONT RIGHT / DOWN BACK UP, the bottom row
//             rotated (270, 90, 270 degrees), tan(pi/4 * t) per face, 2-pixel padding at the
//             outer edges and between the rows, trimmed by the lookup.
// The mode comes from `?projection=`, else from a `projection.json` sidecar beside the URL,
// else flat. Look around with drag, touch, arrow keys or device orientation; a VR button
// appears where WebXR can open an immersive session. Errors show in the page.
"use strict";

const MODES = { flat: 0, equirect: 1, c3x2: 2, eac: 3 };
const params = new URLSearchParams(location.search);
const video = document.getElementById("video");
const canvas = document.getElementById("canvas");
const errorBox = document.getElementById("error");
const statusBox = document.getElementById("status");
const modeSelect = document.getElementById("mode");

const view = { yaw: 0, pitch: 0, fov: 90, mode: "flat" };

// Errors stay listed (newest last, each once) until playback starts, so a second problem does
// not hide the first.
const errors = [];
function showError(message) {
  if (errors.includes(message)) return;
  errors.push(message);
  errorBox.textContent = errors.join("\n");
  errorBox.classList.add("shown");
}
function clearErrors() {
  errors.length = 0;
  errorBox.textContent = "";
  errorBox.classList.remove("shown");
}

window.addEventListener("error", (e) => showError(`Player error: ${e.message}`));

// ---- WebGL -------------------------------------------------------------------------------

const VERTEX = `
attribute vec2 position;
varying vec2 ndc;
void main() { ndc = position; gl_Position = vec4(position, 0.0, 1.0); }`;

const FRAGMENT = `
precision highp float;
varying vec2 ndc;
uniform sampler2D frame;
uniform mat4 inverseProjection;
uniform mat3 orientation;
uniform int mode;
uniform vec2 frameSize;
const float PI = 3.14159265358979;

// Directions: x right, y up, z back (looking ahead is -z).
vec2 equirect(vec3 d) {
  float lon = atan(d.x, -d.z);
  float lat = asin(clamp(d.y, -1.0, 1.0));
  return vec2(0.5 + lon / (2.0 * PI), 0.5 - lat / PI);
}

// The cube face a direction hits, and where on it: face (0..5 = right left up down front
// back) and (u, v) in -1..1, u to the right and v down as the face is stored.
vec3 cube(vec3 d) {
  vec3 a = abs(d);
  if (a.x >= a.y && a.x >= a.z) {
    return d.x > 0.0 ? vec3(0.0, d.z / a.x, -d.y / a.x) : vec3(1.0, -d.z / a.x, -d.y / a.x);
  }
  if (a.y >= a.z) {
    return d.y > 0.0 ? vec3(2.0, d.x / a.y, -d.z / a.y) : vec3(3.0, d.x / a.y, d.z / a.y);
  }
  return d.z < 0.0 ? vec3(4.0, d.x / a.z, -d.y / a.z) : vec3(5.0, -d.x / a.z, -d.y / a.z);
}

vec2 c3x2(vec3 d) {
  vec3 f = cube(d);
  vec2 cell = vec2(mod(f.x, 3.0), floor(f.x / 3.0));
  // Half a texel in from the face's edges, so filtering never reads the next face.
  vec2 size = frameSize / vec2(3.0, 2.0);
  vec2 t = clamp((f.yz + 1.0) * 0.5, 0.5 / size, 1.0 - 0.5 / size);
  return (cell + t) / vec2(3.0, 2.0);
}

vec2 eac(vec3 d) {
  vec3 f = cube(d);
  float face = f.x;
  float u = f.y;
  float v = f.z;
  // EAC cells and their rotations: LEFT FRONT RIGHT / DOWN(270) BACK(90) UP(270).
  vec2 cell;
  vec2 uv;
  if (face == 1.0) { cell = vec2(0.0, 0.0); uv = vec2(u, v); }
  else if (face == 4.0) { cell = vec2(1.0, 0.0); uv = vec2(u, v); }
  else if (face == 0.0) { cell = vec2(2.0, 0.0); uv = vec2(u, v); }
  else if (face == 3.0) { cell = vec2(0.0, 1.0); uv = vec2(v, -u); }
  else if (face == 5.0) { cell = vec2(1.0, 1.0); uv = vec2(-v, u); }
  else { cell = vec2(2.0, 1.0); uv = vec2(v, -u); }
  // Equi-angular: the angle, not its tangent, is spread evenly over the face.
  vec2 t = (2.0 / PI) * atan(uv) + 0.5;
  vec2 pad = 2.0 / frameSize;
  float x = (t.x + cell.x) * (1.0 - 2.0 * pad.x) / 3.0 + pad.x;
  float y = t.y * (0.5 - 2.0 * pad.y) + pad.y + 0.5 * cell.y;
  return vec2(x, y);
}

void main() {
  vec4 p = inverseProjection * vec4(ndc, 1.0, 1.0);
  vec3 d = normalize(orientation * (p.xyz / p.w));
  vec2 uv = mode == 1 ? equirect(d) : mode == 2 ? c3x2(d) : eac(d);
  gl_FragColor = texture2D(frame, uv);
}`;

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
    throw new Error(`shader: ${gl.getShaderInfoLog(shader)}`);
  }
  return shader;
}

function createRenderer() {
  const gl = canvas.getContext("webgl", { preserveDrawingBuffer: true, xrCompatible: true, antialias: false });
  if (!gl) throw new Error("WebGL is not available in this browser: 360 video cannot be drawn");
  const program = gl.createProgram();
  gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX));
  gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT));
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
    throw new Error(`shader link: ${gl.getProgramInfoLog(program)}`);
  }
  gl.useProgram(program);
  const buffer = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
  const position = gl.getAttribLocation(program, "position");
  gl.enableVertexAttribArray(position);
  gl.vertexAttribPointer(position, 2, gl.FLOAT, false, 0, 0);
  const texture = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, texture);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  const at = (name) => gl.getUniformLocation(program, name);
  return {
    gl,
    u: {
      inverseProjection: at("inverseProjection"),
      orientation: at("orientation"),
      mode: at("mode"),
      frameSize: at("frameSize"),
    },
    hasFrame: false,
  };
}

// Column-major 4x4 inverse of a perspective projection (what WebXR hands out per eye).
function invertProjection(m) {
  // Only the entries a perspective matrix has: [0], [5], [8], [9], [10], [11], [14].
  const out = new Float32Array(16);
  out[0] = 1 / m[0];
  out[5] = 1 / m[5];
  out[11] = 1 / m[14];
  out[12] = m[8] / m[0];
  out[13] = m[9] / m[5];
  out[14] = -1;
  out[15] = m[10] / m[14];
  return out;
}

function perspective(fovDegrees, aspect) {
  const f = 1 / Math.tan((fovDegrees * Math.PI) / 360);
  const near = 0.1;
  const far = 10;
  const m = new Float32Array(16);
  m[0] = f / aspect;
  m[5] = f;
  m[10] = (far + near) / (near - far);
  m[11] = -1;
  m[14] = (2 * far * near) / (near - far);
  return m;
}

// Yaw (right positive) then pitch (up positive), as a column-major 3x3.
function orientationMatrix(yawDeg, pitchDeg) {
  const y = (-yawDeg * Math.PI) / 180;
  const p = (pitchDeg * Math.PI) / 180;
  const cy = Math.cos(y), sy = Math.sin(y), cp = Math.cos(p), sp = Math.sin(p);
  // R = Ry(y) * Rx(p)
  return new Float32Array([
    cy, 0, -sy,
    sy * sp, cp, cy * sp,
    sy * cp, -sp, cy * cp,
  ]);
}

// Column-major 3x3 rotation of a unit quaternion (WebXR's view orientation).
function quaternionMatrix(q) {
  const { x, y, z, w } = q;
  return new Float32Array([
    1 - 2 * (y * y + z * z), 2 * (x * y + z * w), 2 * (x * z - y * w),
    2 * (x * y - z * w), 1 - 2 * (x * x + z * z), 2 * (y * z + x * w),
    2 * (x * z + y * w), 2 * (y * z - x * w), 1 - 2 * (x * x + y * y),
  ]);
}

let renderer = null;

function uploadFrame() {
  const { gl } = renderer;
  if (video.readyState < 2 || !video.videoWidth) return false;
  gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, video);
  renderer.hasFrame = true;
  return true;
}

function drawView(inverseProjection, orientation, viewport) {
  const { gl, u } = renderer;
  gl.viewport(viewport.x, viewport.y, viewport.width, viewport.height);
  gl.uniformMatrix4fv(u.inverseProjection, false, inverseProjection);
  gl.uniformMatrix3fv(u.orientation, false, orientation);
  gl.uniform1i(u.mode, MODES[view.mode]);
  gl.uniform2f(u.frameSize, video.videoWidth, video.videoHeight);
  gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
}

function drawScreen() {
  if (!renderer || view.mode === "flat") return;
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  if (!uploadFrame() && !renderer.hasFrame) return;
  drawView(invertProjection(perspective(view.fov, width / height)), orientationMatrix(view.yaw, view.pitch),
    { x: 0, y: 0, width, height });
}

let xrSession = null;

function frameLoop() {
  if (!xrSession) drawScreen();
  requestAnimationFrame(frameLoop);
}

// ---- Modes and controls ------------------------------------------------------------------------

function setMode(mode) {
  if (!(mode in MODES)) {
    showError(`Unknown projection "${mode}": use flat, equirect, c3x2 or eac`);
    mode = "flat";
  }
  if (mode !== "flat" && !renderer) {
    try {
      renderer = createRenderer();
    } catch (err) {
      showError(err.message);
      mode = "flat";
    }
  }
  view.mode = mode;
  modeSelect.value = mode;
  const flat = mode === "flat";
  video.classList.toggle("hidden", !flat);
  canvas.hidden = flat;
}

function clampPitch() {
  view.pitch = Math.max(-90, Math.min(90, view.pitch));
}

let drag = null;
canvas.addEventListener("pointerdown", (e) => {
  drag = { x: e.clientX, y: e.clientY, yaw: view.yaw, pitch: view.pitch };
  canvas.setPointerCapture(e.pointerId);
});
canvas.addEventListener("pointermove", (e) => {
  if (!drag) return;
  const degreesPerPixel = view.fov / canvas.clientHeight;
  view.yaw = drag.yaw - (e.clientX - drag.x) * degreesPerPixel;
  view.pitch = drag.pitch + (e.clientY - drag.y) * degreesPerPixel;
  clampPitch();
});
canvas.addEventListener("pointerup", () => { drag = null; });
canvas.addEventListener("pointercancel", () => { drag = null; });
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  view.fov = Math.max(30, Math.min(120, view.fov + e.deltaY * 0.05));
}, { passive: false });
window.addEventListener("keydown", (e) => {
  const step = { ArrowLeft: [-5, 0], ArrowRight: [5, 0], ArrowUp: [0, 5], ArrowDown: [0, -5] }[e.key];
  if (!step) return;
  view.yaw += step[0];
  view.pitch += step[1];
  clampPitch();
});

// Device orientation (phones): the device's heading and tilt become yaw and pitch.
function followOrientation() {
  window.addEventListener("deviceorientation", (e) => {
    if (e.alpha === null || view.mode === "flat") return;
    view.yaw = -e.alpha;
    view.pitch = e.beta - 90;
    clampPitch();
  });
}
const motionButton = document.getElementById("motion");
if ("DeviceOrientationEvent" in window) {
  if (typeof DeviceOrientationEvent.requestPermission === "function") {
    motionButton.hidden = false; // iOS asks from a user gesture.
    motionButton.addEventListener("click", async () => {
      try {
        if ((await DeviceOrientationEvent.requestPermission()) === "granted") followOrientation();
        else showError("Motion access was refused: drag to look around");
      } catch (err) {
        showError(`Motion access failed: ${err.message}`);
      }
    });
  } else {
    followOrientation();
  }
}

// WebXR: an immersive session draws each eye's view with the same shader.
const vrButton = document.getElementById("vr");
if (navigator.xr && navigator.xr.isSessionSupported) {
  navigator.xr.isSessionSupported("immersive-vr").then((ok) => { vrButton.hidden = !ok; }, () => {});
  vrButton.addEventListener("click", async () => {
    try {
      if (view.mode === "flat") setMode("equirect");
      const { gl } = renderer;
      await gl.makeXRCompatible();
      xrSession = await navigator.xr.requestSession("immersive-vr");
      const layer = new XRWebGLLayer(xrSession, gl);
      xrSession.updateRenderState({ baseLayer: layer });
      const space = await xrSession.requestReferenceSpace("local");
      xrSession.addEventListener("end", () => { xrSession = null; });
      const onFrame = (_, frame) => {
        if (!xrSession) return;
        xrSession.requestAnimationFrame(onFrame);
        const pose = frame.getViewerPose(space);
        if (!pose) return;
        gl.bindFramebuffer(gl.FRAMEBUFFER, layer.framebuffer);
        uploadFrame();
        for (const eye of pose.views) {
          drawView(invertProjection(eye.projectionMatrix), quaternionMatrix(eye.transform.orientation),
            layer.getViewport(eye));
        }
      };
      xrSession.requestAnimationFrame(onFrame);
    } catch (err) {
      showError(`VR failed: ${err.message}`);
    }
  });
}

modeSelect.addEventListener("change", () => setMode(modeSelect.value));
document.getElementById("play").addEventListener("click", () => {
  video.muted = false;
  video.play().catch((err) => showError(`Play failed: ${err.message}`));
});

// ---- Playback ------------------------------------------------------------------------------

/** Target durations to hold back from the live edge of a classic playlist (`?hold=N`). */
function holdBackSegments() {
  const given = Number(params.get("hold"));
  return Number.isInteger(given) && given >= 1 && given <= 10 ? given : 2;
}

function attach(url) {
  if (window.Hls && Hls.isSupported()) {
    const hls = new Hls({ liveDurationInfinity: true });
    // A classic playlist has no HOLD-BACK, so hls.js holds back liveSyncDurationCount target
    // durations (3: about 7.5 s glass to glass with 2 s segments). Two still leave a whole
    // segment of margin and bring it under 6 s; `?hold=3` restores hls.js's default. Set on
    // the config, not in the constructor: a constructor value would also override LL-HLS's
    // PART-HOLD-BACK.
    hls.config.liveSyncDurationCount = holdBackSegments();
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      showError(`Playback error: ${data.type} ${data.details}${data.response ? ` (HTTP ${data.response.code})` : ""}`);
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) setTimeout(() => hls.loadSource(url), 3000);
      else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
    });
    hls.on(Hls.Events.MANIFEST_PARSED, clearErrors);
    hls.loadSource(url);
    hls.attachMedia(video);
    return hls;
  }
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url; // Safari: native HLS.
    return null;
  }
  showError("This browser cannot play HLS (no Media Source Extensions and no native HLS)");
  return null;
}

video.addEventListener("error", () => showError(`Video error: ${video.error ? video.error.message || video.error.code : "unknown"}`));
video.addEventListener("timeupdate", () => {
  statusBox.textContent = `${view.mode} · ${video.videoWidth}x${video.videoHeight} · ${video.currentTime.toFixed(1)} s`;
});

// The projection: the parameter wins; else `projection.json` beside the playlist, which the
// worker writes for 360 sources: `playlists[<file name>].projection` for the master being
// played (master.m3u8 = equirect, eac.m3u8 = eac, c3x2.m3u8 = c3x2), else its top-level
// `projection` ("equirect" | "c3x2" | "eac" | "flat"); else flat.
async function projectionFor(url) {
  const given = params.get("projection");
  if (given) return given;
  try {
    const playlist = new URL(url, location.href);
    const response = await fetch(new URL("projection.json", playlist));
    if (!response.ok) return "flat";
    const sidecar = await response.json();
    const file = decodeURIComponent(playlist.pathname.split("/").pop());
    const entry = sidecar.playlists && sidecar.playlists[file];
    if (entry && typeof entry.projection === "string") return entry.projection;
    return typeof sidecar.projection === "string" ? sidecar.projection : "flat";
  } catch {
    return "flat";
  }
}

async function start() {
  const url = params.get("url");
  if (!url) {
    showError("No stream: open this page with ?url=PLAYLIST.m3u8 (and &projection=equirect, c3x2 or eac for 360)");
    return;
  }
  const yaw = Number(params.get("yaw"));
  const pitch = Number(params.get("pitch"));
  if (Number.isFinite(yaw)) view.yaw = yaw;
  if (Number.isFinite(pitch)) view.pitch = pitch;
  clampPitch();
  setMode(await projectionFor(url));
  attach(url);
  video.play().catch(() => { /* autoplay may need the Play button */ });
  requestAnimationFrame(frameLoop);
}

// For scripts and tests: where the view looks, and what the middle of the canvas shows.
window.spherecastPlayer = {
  view,
  look(yaw, pitch) { view.yaw = yaw; view.pitch = pitch; clampPitch(); drawScreen(); },
  // The colour at (fx, fy) of the canvas, as fractions from its left and top edges.
  pixelAt(fx, fy) {
    if (!renderer || view.mode === "flat") return null;
    drawScreen();
    const { gl } = renderer;
    const pixel = new Uint8Array(4);
    const x = Math.min(canvas.width - 1, Math.floor(canvas.width * fx));
    const y = Math.min(canvas.height - 1, Math.floor(canvas.height * (1 - fy)));
    gl.readPixels(x, y, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);
    return Array.from(pixel.slice(0, 3));
  },
  centerPixel() { return this.pixelAt(0.5, 0.5); },
  error: () => (errorBox.classList.contains("shown") ? errorBox.textContent : ""),
};

start();
