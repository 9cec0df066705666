// useChannel: a React hook over BridgeClient. One socket per mounted hook; the socket is opened
// after the commit (so StrictMode's mount → unmount → mount never opens a throwaway socket) and
// closed on unmount or when the URL/channels/token change.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { BridgeClient, type BridgeClientOptions, type BridgeError, type ConnectionState } from "./client.js";
import type { BridgeEvent } from "./events.js";

export interface UseChannelOptions extends BridgeClientOptions {
  /** Keep at most this many events in `messages`, oldest dropped first (default 200). */
  maxMessages?: number;
  /** When false, no socket is opened (default true). */
  enabled?: boolean;
}

export interface UseChannelResult {
  /** The latest events, oldest first, at most `maxMessages`. */
  messages: BridgeEvent[];
  lastEvent: BridgeEvent | undefined;
  /** The socket is open and the bridge acknowledged the subscription(s). */
  isConnected: boolean;
  state: ConnectionState;
  reconnects: number;
  /** The latest refusal or terminal failure (a refused token, a terminal close code). */
  error: BridgeError | undefined;
  /** Sends a client message; false when not connected. */
  send: (message: Record<string, unknown>, channel?: string) => boolean;
  /** The live client (undefined before the first effect / while disabled), for other handlers. */
  client: BridgeClient | undefined;
}

export function useChannel(urlOrOptions: string | UseChannelOptions): UseChannelResult {
  const options: UseChannelOptions = typeof urlOrOptions === "string" ? { url: urlOrOptions } : urlOrOptions;
  const maxMessages = Math.max(1, options.maxMessages ?? 200);
  const enabled = options.enabled ?? true;
  // Reconnect only when what identifies the connection changes, not on every new options object.
  const key = JSON.stringify([options.url, options.channels ?? [], options.token ?? null, options.tokenTransport ?? null,
    options.clientId ?? null, options.multiplex ?? false, enabled]);
  const latest = useRef(options);
  latest.current = options;

  const [messages, setMessages] = useState<BridgeEvent[]>([]);
  const [lastEvent, setLastEvent] = useState<BridgeEvent | undefined>(undefined);
  const [state, setState] = useState<ConnectionState>("idle");
  const [reconnects, setReconnects] = useState(0);
  const [error, setError] = useState<BridgeError | undefined>(undefined);
  const [subscribed, setSubscribed] = useState(false);
  const [client, setClient] = useState<BridgeClient | undefined>(undefined);
  const clientRef = useRef<BridgeClient | undefined>(undefined);
  const maxRef = useRef(maxMessages);
  maxRef.current = maxMessages;

  useEffect(() => {
    setMessages([]);
    setLastEvent(undefined);
    setError(undefined);
    if (!enabled) {
      setState("idle");
      return;
    }
    const { maxMessages: _m, enabled: _e, ...clientOptions } = latest.current;
    const c = new BridgeClient(clientOptions);
    clientRef.current = c;
    setClient(c);
    const offs = [
      c.onEvent((e) => {
        setLastEvent(e);
        setMessages((prev) => {
          const max = maxRef.current;
          const next = prev.length >= max ? prev.slice(prev.length - max + 1) : prev.slice();
          next.push(e);
          return next;
        });
      }),
      c.onState((s) => {
        setState(s.state);
        setReconnects(s.reconnects);
        setSubscribed(c.isSubscribed);
      }),
      c.onSubscribed(() => setSubscribed(c.isSubscribed)),
      c.onError((e) => setError(e)),
    ];
    const timer = setTimeout(() => {
      c.connect().catch(() => undefined);
    }, 0);
    return () => {
      clearTimeout(timer);
      for (const off of offs) off();
      c.close(1000, "unmounted");
      if (clientRef.current === c) clientRef.current = undefined;
      setClient((cur) => (cur === c ? undefined : cur));
    };
  }, [key]);

  // Trim at once when maxMessages shrinks.
  useEffect(() => {
    setMessages((prev) => (prev.length > maxMessages ? prev.slice(prev.length - maxMessages) : prev));
  }, [maxMessages]);

  const send = useCallback(
    (message: Record<string, unknown>, channel?: string) => clientRef.current?.send(message, channel) ?? false,
    [],
  );

  return useMemo(
    () => ({ messages, lastEvent, isConnected: state === "open" && subscribed, state, reconnects, error, send, client }),
    [messages, lastEvent, state, subscribed, reconnects, error, send, client],
  );
}
