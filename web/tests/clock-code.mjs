// Reads the wall-clock block code that testkit/src/clock.rs draws into every frame of the
// latency test stream (see that file for the layout; change both together): 64 bits, 48 of
// Unix milliseconds and a CRC-16/CCITT-FALSE, each bit a pair of cells (white-black = 1,
// black-white = 0) on a 34 x 18 grid over the frame, 32 cells per row in grid rows 1-4 from
// column 1. Works in the browser (canvas pixels) and in node (a luma plane).

export const GRID_COLS = 34;
export const GRID_ROWS = 18;
export const FIRST_ROW = 1;
export const CODE_ROWS = 4;
export const BITS = 64;
// Grid rows from the top of the frame that hold the code, plus one of margin: a reader only
// needs this band of the picture.
export const BAND_ROWS = FIRST_ROW + CODE_ROWS + 1;
// The least difference between the two cells of a pair for its bit to count (black and white
// differ by 219 in video range, 255 in full range).
export const MIN_CONTRAST = 64;

// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF).
export function crc16(bytes) {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc;
}

// The milliseconds in 64 bits (most significant first), or null when the CRC does not match.
export function decodeBits(bits) {
  if (bits.length !== BITS) return null;
  let ms = 0;
  for (let i = 0; i < 48; i++) ms = ms * 2 + (bits[i] ? 1 : 0); // exact: below 2^53
  let check = 0;
  for (let i = 48; i < 64; i++) check = check * 2 + (bits[i] ? 1 : 0);
  const bytes = [];
  for (let i = 5; i >= 0; i--) bytes.push(Math.floor(ms / 2 ** (8 * i)) % 256);
  return crc16(bytes) === check ? ms : null;
}

// Grid (column, row) of cell `index` (0..127): bit index/2, first or second of its pair.
export function cell(index) {
  const perRow = GRID_COLS - 2;
  return [1 + (index % perRow), FIRST_ROW + Math.floor(index / perRow)];
}

// Reads the code from an image of the top `rows` grid rows of a frame (the whole frame: 18;
// the band a browser copies: BAND_ROWS): { width, height, data, channels } with `channels`
// bytes per pixel (4 for a canvas's RGBA, 1 for a luma plane). Returns the milliseconds, or
// null when a pair has no clear difference or the CRC fails.
export function readClock(image, rows = GRID_ROWS) {
  const { width, height, data, channels } = image;
  const level = (index) => {
    const [col, row] = cell(index);
    const x0 = Math.floor((col * width) / GRID_COLS);
    const x1 = Math.floor(((col + 1) * width) / GRID_COLS);
    const y0 = Math.floor((row * height) / rows);
    const y1 = Math.floor(((row + 1) * height) / rows);
    // The middle half of the cell: its edges blur under scaling and compression.
    const [w, h] = [x1 - x0, y1 - y0];
    let sum = 0;
    let n = 0;
    for (let y = y0 + Math.floor(h / 4); y < y1 - Math.floor(h / 4); y++) {
      for (let x = x0 + Math.floor(w / 4); x < x1 - Math.floor(w / 4); x++) {
        const at = (y * width + x) * channels;
        sum += channels >= 3
          ? 0.299 * data[at] + 0.587 * data[at + 1] + 0.114 * data[at + 2]
          : data[at];
        n++;
      }
    }
    return n ? sum / n : 0;
  };
  const bits = [];
  for (let bit = 0; bit < BITS; bit++) {
    const a = level(2 * bit);
    const b = level(2 * bit + 1);
    if (Math.abs(a - b) < MIN_CONTRAST) return null;
    bits.push(a > b);
  }
  return decodeBits(bits);
}
