/**
 * qtalk for browsers and Node: RPC with both sides calling, over qmux on WebSocket or over
 * WebTransport streams, with JSON and CBOR encoded byte for byte as the Go reference does.
 *
 * ```js
 * import { connect } from "@qtalk-rs/qtalk";
 * const peer = await connect("ws://127.0.0.1:8080/");
 * console.log(await peer.call("Upper", ["hello world"]));   // HELLO WORLD
 * ```
 */
export { type Codec, CodecError, json, cbor, codecByName } from "./codec/index.js";
export type { Session, Channel } from "./mux/channel.js";
export { QmuxSession, QmuxChannel, type QmuxOptions, type ByteTransport } from "./mux/qmux.js";
export {
  WebTransportSession,
  WebTransportChannel,
  type WebTransportLike,
  type BidirectionalStreamLike,
} from "./mux/webtransport.js";
export { WebSocketTransport, type WebSocketLike } from "./transport/websocket.js";
export { Peer, func, type PeerOptions, type Callback } from "./rpc/peer.js";
export { Stream, Call, Responder, Response } from "./rpc/call.js";
export { RespondMux, normalizeSelector, type Handler, type HandlerFunc } from "./rpc/mux.js";
export { connect, dial, ConnectError, hexBytes, type ConnectOptions } from "./connect.js";
export {
  QtalkError,
  ProtocolError,
  SessionClosedError,
  ChannelClosedError,
  OpenRefusedError,
  RemoteError,
  RpcError,
} from "./errors.js";
