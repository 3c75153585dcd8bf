// Compiled (not run) by test.sh: the published types, as a TypeScript user imports them.
import { connect, listen, RespondMux, func, Peer, RemoteError, type Response } from "@qtalk-rs/qtalk";
import { runCheck, callbacks } from "@qtalk-rs/qtalk/interop";

export async function example(): Promise<string> {
  const mux = new RespondMux().handle("Upper", func((s: string) => s.toUpperCase()));
  const server = await listen("ws://127.0.0.1:0", { mux, codec: "cbor" });
  const peer: Peer = await connect(server.url, { codec: "cbor", mux: callbacks() });
  const r: Response = await peer.request("Upper", ["x"]);
  const bytes: Uint8Array | null = await r.read();
  void bytes;
  await runCheck(peer, { out: () => {} }).catch((e: unknown) => e instanceof RemoteError);
  peer.close();
  await server.close();
  return String(r.reply);
}
