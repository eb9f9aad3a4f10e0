// A minimal seed-style signaling server: one WebSocket per client, the first message is
// the client's ID, every later message is "<to ID>\n<payload>" and goes to that client.
// Written for `neonet bench ssn` (python/neonet/bench/ssn.py) as the comparison point.
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] || 0);
const wss = new WebSocketServer({ port, host: "127.0.0.1", perMessageDeflate: false });
const clients = new Map();

wss.on("connection", (socket) => {
  let id = null;
  socket.on("message", (data) => {
    if (id === null) {
      id = data.toString();
      clients.set(id, socket);
      socket.send("joined");
      return;
    }
    const newline = data.indexOf(10);
    if (newline < 0) return;
    const peer = clients.get(data.subarray(0, newline).toString());
    if (peer !== undefined) peer.send(data.subarray(newline + 1), { binary: true });
  });
  socket.on("close", () => {
    if (id !== null && clients.get(id) === socket) clients.delete(id);
  });
});

wss.on("listening", () => {
  console.log(JSON.stringify({ port: wss.address().port, pid: process.pid }));
});
