/** Runs `f` in a later task: after the microtasks of this one and the I/O already due. */
export function macrotask(f: () => void): void {
  if (typeof setImmediate === "function") {
    setImmediate(f);
    return;
  }
  // Browsers: a message to ourselves (setTimeout(0) may wait 4 ms or more).
  if (!taskPort) {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => taskQueue.shift()?.();
    taskPort = ch.port2;
  }
  taskQueue.push(f);
  taskPort.postMessage(0);
}
let taskPort: MessagePort | undefined;
const taskQueue: (() => void)[] = [];
