// BridgePublisher: the backend side. A typed wrapper over @grpc/grpc-js for EventService, using
// the generated schemas for (de)serialisation (no proto-loader, no runtime .proto parsing).
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, fromJson, toBinary, toJson, type JsonObject, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ClientMessageSchema,
  EventSchema,
  HistoryRequestSchema,
  HistoryResponseSchema,
  PresenceRequestSchema,
  PresenceResponseSchema,
  PublishRequestSchema,
  PublishResponseSchema,
  PublishStreamResponseSchema,
  SubscribeRequestSchema,
  type ClientMessage,
  type Event,
  type PublishRequest,
  type PublishResponse,
  type PublishStreamResponse,
  type HistoryRequest,
  type HistoryResponse,
  type PresenceRequest,
  type PresenceResponse,
} from "./gen/gathering/bridge/v1/events_pb.js";
import { decodeEvent, eventSchemas, isKnownEventType, type BridgeEvent, type Frame, type KnownEventType } from "./events.js";
import type { NamespaceOf } from "./channels.js";
import type { ChannelCustomTypes, ChannelPayloadTypes, TypedNamespace } from "./gen/gathering/bridge/v1/channels_pb.js";

/** A channel's retained events, decoded as subscribers see them. */
export interface HistoryResult {
  epoch: string;
  /** The channel's latest offset. */
  offset: bigint;
  /** Whether `events` cover everything after `since` (false: some were evicted). */
  complete: boolean;
  events: BridgeEvent[];
  response: HistoryResponse;
}

const SERVICE = "/gathering.bridge.v1.EventService/";

/** What `publish` accepts as `data` for each known type (the generated init shape, camelCase). */
export type PayloadInit = { [K in KnownEventType]: MessageInitShape<(typeof eventSchemas)[K]> };

/**
 * The event type `T` when channel `C` carries it, else `never` (so the call does not compile):
 * a typed namespace (events.proto's channel_types) takes its payload types, and custom ones only
 * when it allows them; an untyped namespace, a channel only known at run time (`string`) or a
 * type only known at run time takes anything (the bridge checks those: INVALID_ARGUMENT).
 */
export type PublishableType<C extends string, T extends string> =
  string extends T
    ? T
    : NamespaceOf<C> extends infer N
      ? N extends TypedNamespace
        ? T extends KnownEventType
          ? T extends ChannelPayloadTypes[N]
            ? T
            : never
          : ChannelCustomTypes[N] extends true
            ? T
            : never
        : T
      : never;

/** What `publish` takes as `data` for type `T`: the payload's init shape, or custom JSON. */
export type PublishData<T extends string> = T extends KnownEventType ? PayloadInit[T] : JsonObject;

/** One event for `publishStream`: a known type with its typed data, or a custom type with JSON. */
export type PublishItem =
  | { [K in KnownEventType]: { channel: string; type: K; data: PayloadInit[K]; timestamp?: Date } }[KnownEventType]
  | { channel: string; type: string; data: JsonObject; timestamp?: Date }
  | { event: Event };

/** A call's metadata: grpc-js Metadata, or plain header → value pairs. */
export type MetadataInit = grpc.Metadata | Record<string, string>;

export interface CallOptions {
  /** Extra metadata for this call (merged over the publisher's). */
  metadata?: MetadataInit;
}

/**
 * `PublishResponse` plus JSON-safe forms of its int64 `offset`: `offsetNumber` (exact up to
 * 2^53) and `offsetString`; `JSON.stringify(result)` prints proto3 JSON (`"offset":"42"`).
 */
export type PublishResult = PublishResponse & {
  offsetNumber: number;
  offsetString: string;
  toJSON(): JsonValue;
};

/** `PublishStreamResponse` with the counts as numbers and a proto3-JSON `toJSON`. */
export type PublishStreamResult = PublishStreamResponse & {
  acceptedNumber: number;
  rejectedNumber: number;
  toJSON(): JsonValue;
};

export interface BridgePublisherOptions {
  credentials?: grpc.ChannelCredentials;
  /** Bearer token (JWT) or API key, sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  /** Same as `token`, for API keys (`--api_keys_file`). */
  apiKey?: string;
  /** A token source called per call (e.g. a refreshing JWT); wins over `token`/`apiKey`. */
  getToken?: () => string | Promise<string>;
  /** Metadata sent with every call. */
  metadata?: MetadataInit;
  /** Deadline of each unary call, ms (default 10 000). */
  deadlineMs?: number;
  /** Wait for the channel to connect instead of failing fast while the bridge is down. */
  waitForReady?: boolean;
  channelOptions?: grpc.ChannelOptions;
}

const camel = (s: string) => s.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());

/**
 * Builds an `Event`: `type` a known payload name (`agent_message`, ... with typed `data`) or a
 * custom type (its `data` any JSON object).
 */
export function buildEvent<K extends KnownEventType>(channel: string, type: K, data: PayloadInit[K], timestamp?: Date): Event;
export function buildEvent(channel: string, type: string, data: JsonObject, timestamp?: Date): Event;
export function buildEvent(channel: string, type: string, data: any, timestamp?: Date): Event {
  const ts = timestamp ? timestampFromDate(timestamp) : undefined;
  if (isKnownEventType(type)) {
    const value = create(eventSchemas[type] as any, data);
    return create(EventSchema, { channel, timestamp: ts, payload: { case: camel(type), value } as any });
  }
  return create(EventSchema, { channel, timestamp: ts, payload: { case: "custom", value: { type, data } } });
}

/** Builds an `Event` from proto3 JSON data with proto field names (`{"agent_id":7}`). */
export function buildEventFromJson(channel: string, type: string, data: JsonObject, timestamp?: Date): Event {
  if (isKnownEventType(type)) {
    const value = fromJson(eventSchemas[type] as any, data as JsonValue);
    return create(EventSchema, { channel, timestamp: timestamp ? timestampFromDate(timestamp) : undefined, payload: { case: camel(type), value } as any });
  }
  return buildEvent(channel, type, data, timestamp);
}

export class BridgePublisher {
  private readonly client: grpc.Client;
  private readonly deadlineMs: number;
  private readonly wfr: boolean;
  private readonly options: BridgePublisherOptions;

  constructor(target: string, options: BridgePublisherOptions = {}) {
    this.client = new grpc.Client(target, options.credentials ?? grpc.credentials.createInsecure(), options.channelOptions);
    this.deadlineMs = options.deadlineMs ?? 10_000;
    this.wfr = options.waitForReady ?? false;
    this.options = options;
  }

  /**
   * Publishes one event; resolves with its offset (bigint, plus `offsetNumber`/`offsetString`),
   * the channel's epoch and its timestamp.
   *
   * Typed by channel: `publish("circles/a", "file_changed", …)` does not compile (circles never
   * carry it; see PublishableType), `publish("workspace/1", "deploy.done", …)` neither (no custom
   * types there).
   */
  publish<C extends string, T extends string>(
    channel: C,
    type: PublishableType<C, T>,
    data: PublishData<T>,
    options?: { timestamp?: Date } & CallOptions,
  ): Promise<PublishResult>;
  publish(channel: string, type: string, data: any, options: { timestamp?: Date } & CallOptions = {}): Promise<PublishResult> {
    return this.publishEvent(buildEvent(channel, type, data, options.timestamp), options.metadata);
  }

  /** Publishes a prepared `Event`. */
  async publishEvent(event: Event, metadata?: MetadataInit): Promise<PublishResult> {
    const req = create(PublishRequestSchema, { event });
    const md = await this.meta(metadata);
    const res = await new Promise<PublishResponse>((resolve, reject) => {
      this.client.makeUnaryRequest<PublishRequest, PublishResponse>(
        SERVICE + "Publish",
        (m) => Buffer.from(toBinary(PublishRequestSchema, m)),
        (b) => fromBinary(PublishResponseSchema, b),
        req,
        md,
        { deadline: Date.now() + this.deadlineMs },
        (err, res) => (err ? reject(err) : resolve(res!)),
      );
    });
    return withJson(res, PublishResponseSchema, { offsetNumber: Number(res.offset), offsetString: res.offset.toString() });
  }

  /**
   * Publishes a stream of events (an array, iterable or async iterable) on one PublishStream call,
   * honouring flow control; resolves with the accepted/rejected counts.
   */
  async publishStream(items: Iterable<PublishItem> | AsyncIterable<PublishItem>, metadata?: MetadataInit): Promise<PublishStreamResult> {
    let call!: grpc.ClientWritableStream<PublishRequest>;
    const md = await this.meta(metadata);
    const done = new Promise<PublishStreamResponse>((resolve, reject) => {
      call = this.client.makeClientStreamRequest<PublishRequest, PublishStreamResponse>(
        SERVICE + "PublishStream",
        (m) => Buffer.from(toBinary(PublishRequestSchema, m)),
        (b) => fromBinary(PublishStreamResponseSchema, b),
        md,
        {},
        (err, res) => (err ? reject(err) : resolve(res!)),
      );
    });
    try {
      for await (const item of items as AsyncIterable<PublishItem>) {
        const event = "event" in item ? item.event : buildEvent(item.channel, item.type, item.data as JsonObject, item.timestamp);
        if (!call.write(create(PublishRequestSchema, { event }))) {
          await new Promise<void>((resolve, reject) => {
            const onDrain = () => { call.off("error", onError); resolve(); };
            const onError = (e: Error) => { call.off("drain", onDrain); reject(e); };
            call.once("drain", onDrain);
            call.once("error", onError);
          });
        }
      }
    } catch (err) {
      call.cancel();
      await done.catch(() => undefined);
      throw err;
    }
    call.end();
    const res = await done;
    return withJson(res, PublishStreamResponseSchema, { acceptedNumber: Number(res.accepted), rejectedNumber: Number(res.rejected) });
  }

  /**
   * Streams what WebSocket clients send on channels matching `channels` (exact names,
   * `namespace/*` or `*`). Iterate it; `return()`/`break` cancels the call.
   */
  subscribe(channels: string[], options: { lifecycle?: boolean } & CallOptions = {}): AsyncIterable<ClientMessage> & { cancel(): void } {
    let call: grpc.ClientReadableStream<ClientMessage> | undefined;
    let cancelled = false;
    const start = async () => {
      const md = await this.meta(options.metadata);
      call = this.client.makeServerStreamRequest(
        SERVICE + "Subscribe",
        (m: ReturnType<typeof create<typeof SubscribeRequestSchema>>) => Buffer.from(toBinary(SubscribeRequestSchema, m)),
        (b: Buffer) => fromBinary(ClientMessageSchema, b),
        create(SubscribeRequestSchema, { channels, lifecycle: options.lifecycle ?? false }),
        md,
        {},
      );
      if (cancelled) call.cancel();
      return call;
    };
    const started = start();
    started.catch(() => undefined);
    const iterable = (async function* () {
      const call = await started;
      try {
        for await (const m of call as AsyncIterable<ClientMessage>) yield m;
      } catch (err) {
        if ((err as grpc.ServiceError).code !== grpc.status.CANCELLED) throw err;
      } finally {
        call.cancel();
      }
    })();
    return Object.assign(iterable, {
      cancel: () => {
        cancelled = true;
        call?.cancel();
      },
    });
  }

  /** The retained events of `channel` after offset `since` (0: all), at most `limit` (0: all). */
  async history(channel: string, options: { since?: number | bigint; limit?: number } & CallOptions = {}): Promise<HistoryResult> {
    const req = create(HistoryRequestSchema, { channel, since: BigInt(options.since ?? 0), limit: options.limit ?? 0 });
    const response = await this.unary<HistoryRequest, HistoryResponse>("History", HistoryRequestSchema, HistoryResponseSchema, req, options.metadata);
    const events = response.messages.map((m) => decodeEvent(JSON.parse(m.json) as Frame));
    return { epoch: response.epoch, offset: response.offset, complete: response.complete, events, response };
  }

  /** The channel's members (identities with open connections) and counts. */
  presence(channel: string, metadata?: MetadataInit): Promise<PresenceResponse> {
    const req = create(PresenceRequestSchema, { channel });
    return this.unary<PresenceRequest, PresenceResponse>("Presence", PresenceRequestSchema, PresenceResponseSchema, req, metadata);
  }

  private async unary<Req, Res>(method: string, reqSchema: any, resSchema: any, req: Req, metadata?: MetadataInit): Promise<Res> {
    const md = await this.meta(metadata);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest<Req, Res>(
        SERVICE + method,
        (m) => Buffer.from(toBinary(reqSchema, m as any)),
        (b) => fromBinary(resSchema, b) as Res,
        req,
        md,
        { deadline: Date.now() + this.deadlineMs },
        (err, res) => (err ? reject(err) : resolve(res!)),
      );
    });
  }

  /** Resolves when the gRPC channel is connected (or rejects after `timeoutMs`). */
  waitForReady(timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) =>
      this.client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())),
    );
  }

  close(): void {
    this.client.close();
  }

  /** The publisher's metadata (credentials first), then the call's. */
  private async meta(call?: MetadataInit): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    const o = this.options;
    const token = o.getToken ? await o.getToken() : (o.token ?? o.apiKey);
    if (token !== undefined && token !== "") md.set("authorization", `Bearer ${token}`);
    for (const extra of [o.metadata, call]) {
      if (!extra) continue;
      if (extra instanceof grpc.Metadata) md.merge(extra);
      else for (const [k, v] of Object.entries(extra)) md.set(k, v);
    }
    if (this.wfr) md.setOptions({ waitForReady: true });
    return md;
  }
}

/** Adds JSON-safe fields and a proto3-JSON `toJSON` (int64 as strings) to a response message. */
function withJson<T extends object, X extends object>(msg: T, schema: any, extra: X): T & X & { toJSON(): JsonValue } {
  const json = toJson(schema, msg as any);
  return Object.assign(msg, extra, { toJSON: () => json });
}
