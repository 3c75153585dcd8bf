/** The base of this package's errors. */
export class QtalkError extends Error {
  override name = "QtalkError";
}

/** The peer broke the protocol; the session ends. */
export class ProtocolError extends QtalkError {
  override name = "ProtocolError";
}

/** The session ended (closed by either side, the transport broke, or the peer broke the protocol). */
export class SessionClosedError extends QtalkError {
  override name = "SessionClosedError";
}

/** The channel (or its sending side) is closed: a write or open that cannot happen any more. */
export class ChannelClosedError extends QtalkError {
  override name = "ChannelClosedError";
}

/** The peer refused to open a channel (OPEN_FAILURE). */
export class OpenRefusedError extends QtalkError {
  override name = "OpenRefusedError";
}

/** The remote handler answered with an error; `message` is its text. */
export class RemoteError extends QtalkError {
  override name = "RemoteError";
}

/** An rpc frame was malformed, too large, or cut short. */
export class RpcError extends QtalkError {
  override name = "RpcError";
}
