// Line charts as SVG polylines: one point per step, a gap where a value is unknown (NaN or an
// infinity was reported). Drawn here rather than with a charting library so that the console has
// no script it did not write and nothing to fetch.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 560, HEIGHT = 180, LEFT = 64, RIGHT = 12, TOP = 10, BOTTOM = 26;

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function label(value) {
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e5 || magnitude < 1e-3)) return value.toExponential(2);
  return Number(value.toPrecision(4)).toString();
}

// Replace the contents of `figure`'s <svg> with the curve of `points` ([x, y|null] sorted by x)
// (`fromZero`: the y axis starts at 0, for rates)
export function drawLine(figure, points, { title, xName = "step", fromZero = false } = {}) {
  const chart = figure.querySelector("svg");
  chart.replaceChildren();
  chart.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  const known = points.filter(([, y]) => y !== null);
  const last = known.length ? known[known.length - 1] : null;
  chart.setAttribute("aria-label",
    `${title}: ${points.length} points` + (last ? `, last ${label(last[1])} at ${xName} ${last[0]}` : ""));
  if (!known.length) {
    chart.append(svg("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "empty" }, "no values yet"));
    return;
  }
  const xs = points.map(([x]) => x), ys = known.map(([, y]) => y);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (fromZero) y0 = Math.min(0, y0);
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { const pad = Math.abs(y0) * 0.1 || 1; y0 -= pad; y1 += pad; }
  const px = (x) => LEFT + ((x - x0) / (x1 - x0)) * (WIDTH - LEFT - RIGHT);
  const py = (y) => TOP + (1 - (y - y0) / (y1 - y0)) * (HEIGHT - TOP - BOTTOM);

  chart.append(svg("rect", { x: LEFT, y: TOP, width: WIDTH - LEFT - RIGHT, height: HEIGHT - TOP - BOTTOM, class: "plot" }));
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    chart.append(svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: py(y), y2: py(y), class: "grid" }));
    chart.append(svg("text", { x: LEFT - 6, y: py(y) + 4, "text-anchor": "end", class: "tick" }, label(y)));
  }
  for (const [x, anchor] of [[x0, "start"], [x1, "end"]]) {
    chart.append(svg("text", { x: px(x), y: HEIGHT - 8, "text-anchor": anchor, class: "tick" }, label(x)));
  }
  chart.append(svg("text", { x: (LEFT + WIDTH) / 2, y: HEIGHT - 8, "text-anchor": "middle", class: "tick" }, xName));

  // consecutive known values make one polyline; an unknown one ends it
  let run = [];
  const flush = () => {
    if (run.length) chart.append(svg("polyline", { points: run.join(" "), class: "line" }));
    if (run.length === 1) {
      const [x, y] = run[0].split(",");
      chart.append(svg("circle", { cx: x, cy: y, r: 2.5, class: "dot" }));
    }
    run = [];
  };
  for (const [x, y] of points) {
    if (y === null) flush(); else run.push(`${px(x).toFixed(1)},${py(y).toFixed(1)}`);
  }
  flush();
}
