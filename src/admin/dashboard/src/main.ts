// The admin dashboard: one WebSocket to /admin/ws (the token of the page's own URL, if any), a
// sample frame a second, drawn as cards, uPlot charts and tables. Reconnects with backoff.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "./style.css";

interface Sample {
  type: "sample";
  time: number;
  interval_ms: number;
  node: string;
  status: string;
  connections: number;
  subscriptions: number;
  channels: number;
  queued_bytes: number;
  rates: { published: number; client_messages: number; frames_sent: number; bytes_sent: number };
  busiest: { channel: string; messages: number; rate: number }[];
  closes: { code: number; reason: string; connection: string; time: string }[];
  broker: {
    mode: string;
    publish_up: boolean;
    pubsub_up: boolean;
    detail: string;
    linked_channels: number;
    publish_ms?: Latency;
    lag_ms?: Latency;
  };
  nodes: NodeRow[];
}
// A broker lag histogram over the last interval (ms; p99 is its bucket's upper bound).
interface Latency {
  count: number;
  mean: number;
  p99: number;
}
// One node of the directory (docs/operations.md, "Nodes").
interface NodeRow {
  node: string;
  self: boolean;
  last_seen_ms: number;
  ws: string;
  grpc: string;
  admin: string;
  connections: number;
  subscriptions: number;
  channels: number;
  published: number;
  client_messages: number;
  frames_sent: number;
  broker_up: boolean;
  uptime_s: number;
  version: string;
}
interface History {
  type: "history";
  points: number[][]; // [time ms, connections, subscriptions, channels, published/s, messages/s, frames/s]
}

const MAX_POINTS = 300; // 5 minutes at one sample a second
const $ = (id: string) => document.getElementById(id)!;
const fmt = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });

// Columns: time (s), then one array per series.
const cols: number[][] = [[], [], [], [], [], [], []];

function chart(el: string, series: { label: string; stroke: string; col: number }[]): (data: number[][]) => void {
  const opts: uPlot.Options = {
    width: 400,
    height: 160,
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.stroke, width: 1.5, points: { show: false } }))],
    axes: [{}, { size: 50 }],
  };
  const host = $(el);
  const plot = new uPlot(opts, [[], ...series.map(() => [])], host);
  const fit = () => plot.setSize({ width: Math.max(200, host.clientWidth), height: 160 });
  new ResizeObserver(fit).observe(host);
  return (data) => plot.setData([data[0], ...series.map((s) => data[s.col])]);
}

const draws = [
  chart("chart-connections", [
    { label: "connections", stroke: "#2f6fdb", col: 1 },
    { label: "subscriptions", stroke: "#8a56d1", col: 2 },
  ]),
  chart("chart-channels", [{ label: "channels", stroke: "#1f8a4c", col: 3 }]),
  chart("chart-rates", [
    { label: "published", stroke: "#d1495b", col: 4 },
    { label: "client messages", stroke: "#edae49", col: 5 },
    { label: "frames sent", stroke: "#00798c", col: 6 },
  ]),
];

function addPoint(p: number[]) {
  const t = p[0] / 1000;
  const last = cols[0][cols[0].length - 1];
  if (last !== undefined && t <= last) return; // the history and the live samples overlap
  p.forEach((v, i) => cols[i].push(i === 0 ? t : v));
  if (cols[0].length > MAX_POINTS) for (const c of cols) c.shift();
}

function redraw() {
  for (const d of draws) d(cols);
}

function text(el: HTMLElement, s: string | number) {
  const v = typeof s === "number" ? fmt.format(s) : s;
  if (el.textContent !== v) el.textContent = v;
}

function row(cells: (string | number)[], attrs: Record<string, string>): HTMLTableRowElement {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(attrs)) tr.dataset[k] = v;
  for (const c of cells) {
    const td = document.createElement("td");
    td.textContent = typeof c === "number" ? fmt.format(c) : c;
    tr.append(td);
  }
  return tr;
}

function show(s: Sample) {
  text($("node"), s.node ? `node ${s.node}` : "embedded");
  const status = $("status");
  status.dataset.status = s.status;
  text(status, s.status);
  text($("connections"), s.connections);
  text($("subscriptions"), s.subscriptions);
  text($("channels"), s.channels);
  text($("rate-published"), s.rates.published);
  text($("rate-client-messages"), s.rates.client_messages);
  text($("rate-frames-sent"), s.rates.frames_sent);
  text($("rate-bytes-sent"), s.rates.bytes_sent);
  text($("queued-bytes"), s.queued_bytes);

  const busiest = $("busiest").querySelector("tbody")!;
  busiest.replaceChildren(...s.busiest.map((b) => row([b.channel, b.messages, b.rate], { channel: b.channel, messages: String(b.messages) })));
  const closes = $("closes").querySelector("tbody")!;
  closes.replaceChildren(
    ...s.closes.map((c) => row([c.time.slice(11, 19), String(c.code), c.reason || "—", c.connection], { code: String(c.code), connection: c.connection })),
  );
  const b = s.broker;
  const dl = $("broker");
  dl.dataset.mode = b.mode;
  const items: [string, string][] = [
    ["mode", b.mode],
    ["publish", b.publish_up ? "up" : "down"],
    ["pub/sub", b.pubsub_up ? "up" : "down"],
  ];
  if (b.mode !== "embedded") items.push(["linked channels", String(b.linked_channels)]);
  const lat = (l?: Latency) => (l && l.count > 0 ? `${l.mean.toFixed(2)} ms mean, p99 ≤ ${l.p99} ms (${l.count})` : "—");
  if (b.publish_ms) items.push(["publish round trip", lat(b.publish_ms)]);
  if (b.lag_ms) items.push(["delivery lag", lat(b.lag_ms)]);
  if (b.detail) items.push(["detail", b.detail]);
  dl.replaceChildren(
    ...items.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      return [dt, dd];
    }),
  );
  const uptime = (sec: number) => (sec >= 86400 ? `${Math.floor(sec / 86400)}d` : sec >= 3600 ? `${Math.floor(sec / 3600)}h` : `${Math.floor(sec / 60)}m`);
  $("nodes").querySelector("tbody")!.replaceChildren(
    ...s.nodes.map((n) =>
      row(
        [
          `${n.node || "this node"}${n.self ? " (this)" : ""}`,
          [n.ws && `ws ${n.ws}`, n.grpc && `grpc ${n.grpc}`, n.admin && `admin ${n.admin}`].filter(Boolean).join(", ") || "—",
          n.connections,
          n.channels,
          n.published,
          n.frames_sent,
          n.broker_up ? "up" : "down",
          uptime(n.uptime_s),
          n.version || "—",
          n.self ? "now" : `${(n.last_seen_ms / 1000).toFixed(1)} s ago`,
        ],
        { node: n.node, self: String(n.self) },
      ),
    ),
  );
  addPoint([s.time, s.connections, s.subscriptions, s.channels, s.rates.published, s.rates.client_messages, s.rates.frames_sent]);
  redraw();
}

let retries = 0;
function connect() {
  const token = new URLSearchParams(location.search).get("token");
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/admin/ws${token ? `?token=${encodeURIComponent(token)}` : ""}`;
  const feed = $("feed");
  const ws = new WebSocket(url);
  ws.onopen = () => {
    retries = 0;
    feed.dataset.state = "open";
    text(feed, "live");
  };
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data as string) as Sample | History;
    if (m.type === "history") {
      for (const p of m.points) addPoint(p);
      redraw();
    } else if (m.type === "sample") {
      show(m);
    }
  };
  ws.onclose = () => {
    feed.dataset.state = "reconnecting";
    text(feed, "reconnecting");
    const delay = Math.min(10_000, 500 * 2 ** retries++) * (0.5 + Math.random() / 2);
    setTimeout(connect, delay);
  };
}
connect();
