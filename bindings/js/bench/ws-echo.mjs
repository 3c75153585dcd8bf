// The floor of the Node rows: a plain `ws` server that sends every message back, as a process
// of its own. Prints `listening ws://HOST:PORT` on stdout.
import { WebSocketServer } from "ws";

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
wss.on("listening", () => console.log(`listening ws://127.0.0.1:${wss.address().port}`));
wss.on("connection", (ws) => ws.on("message", (data, binary) => ws.send(data, { binary })));
