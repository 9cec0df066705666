"""Command line:

  python3 -m gathering_bridge publish --target 127.0.0.1:50051 --channel circles/dev-team \\
      --type agent_message --data '{"agent_id":7,"content":"hi"}' [--api-key KEY | --token JWT]
  python3 -m gathering_bridge publish ... --custom deploy.done --data '{"env":"prod"}'
  python3 -m gathering_bridge subscribe ws://127.0.0.1:8080/ws/circles/dev-team [--token JWT]
      [--client NAME] [--count N] [--show-control]

`publish` prints the response as one JSON line (`offset` a JSON number); `subscribe` prints one
JSON line per event (the frame as received) on stdout, connection notices on stderr. Control
frames (`subscribed`, `authenticated`, `pong`, error frames, ...) are not events: they are neither
printed nor counted toward `--count`, unless `--show-control` prints them (still not counted).
`--type` must be one of the proto's event types; a custom type goes with `--custom TYPE`.
"""
from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import signal
import sys
from datetime import datetime
from typing import List, Optional

import grpc
from google.protobuf import json_format


def _credentials(args: argparse.Namespace) -> Optional[str]:
    return args.token or args.api_key or os.environ.get("GATHERING_BRIDGE_TOKEN") or None


def _publish(args: argparse.Namespace) -> int:
    from .events import EVENT_TYPES
    from .publisher import BridgePublisher

    if args.custom is not None:
        type_ = args.custom
        if type_ in EVENT_TYPES:
            print(f"publish: '{type_}' is an event type of the proto: use --type {type_}", file=sys.stderr)
            return 2
    else:
        type_ = args.type
        if type_ not in EVENT_TYPES:
            close = difflib.get_close_matches(type_, list(EVENT_TYPES), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            print(f"publish: unknown --type '{type_}'{hint}; event types: {', '.join(EVENT_TYPES)}. "
                  f"A custom type goes with --custom TYPE", file=sys.stderr)
            return 2
    try:
        data = json.loads(args.data) if args.data else {}
    except ValueError as exc:
        print(f"publish: --data is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print("publish: --data must be a JSON object", file=sys.stderr)
        return 2
    ts = datetime.fromisoformat(args.timestamp.replace("Z", "+00:00")) if args.timestamp else None
    cred = _credentials(args)
    metadata = [("authorization", f"Bearer {cred}")] if cred else None
    with BridgePublisher(args.target, timeout=args.timeout) as pub:
        try:
            res = pub.publish(args.channel, type_, data, timestamp=ts, metadata=metadata)
        except json_format.ParseError as exc:
            print(f"publish: --data does not fit {type_}: {exc}", file=sys.stderr)
            return 2
        except grpc.RpcError as exc:
            print(f"publish: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    out = json_format.MessageToDict(res, preserving_proto_field_name=True)
    out["offset"] = int(res.offset)
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0


async def _subscribe(args: argparse.Namespace) -> int:
    from .subscriber import BridgeClosed, BridgeSubscriber

    if args.api_key:
        print("subscribe: the bridge's WebSocket side takes tokens (JWT) only; API keys authenticate "
              "gRPC backends (publish). Use --token", file=sys.stderr)
        return 2
    if args.since is not None or args.epoch is not None:
        if args.since is None or args.epoch is None:
            print("subscribe: --since and --epoch go together", file=sys.stderr)
            return 2

    def note(msg: str) -> None:
        print(f"# {msg}", file=sys.stderr, flush=True)

    def control(frame: dict) -> None:
        if args.show_control:
            print(json.dumps(frame, separators=(",", ":"), ensure_ascii=False), flush=True)

    sub = BridgeSubscriber(
        args.url,
        channels=args.channel or (),
        token=_credentials(args),
        client_id=args.client,
        reconnect=not args.no_reconnect,
        on_state=lambda s: note(f"state {s}"),
        on_subscribed=lambda f: note(
            f"subscribed {f.get('channel')} epoch={f.get('epoch')} offset={f.get('offset')}"
            + (f" recovered={str(f.get('recovered')).lower()}" if "recovered" in f else "")),
        on_gap=lambda g: note(f"gap {g.channel} from {g.first} to {g.last if g.last is not None else '?'}"
                              + (" (epoch changed)" if g.epoch_changed else "")),
        on_error=lambda e: note(f"error {e}"),
        on_control=control,
        on_going_away=lambda reason, positions: note(
            f"going away ({reason}); resuming "
            + (", ".join(f"{ch} epoch={e} offset={o}" for ch, (e, o) in positions.items()) or "nothing")),
    )
    if args.since is not None:
        for ch in sub.channels:
            sub.resume(ch, args.epoch, args.since)
    if not sub.channels:
        print("subscribe: no channel (use ws://host:port/ws/<channel> or --channel)", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    n = 0
    try:
        await sub.start(timeout=args.timeout)

        async def pump() -> None:
            nonlocal n
            async for event in sub:
                print(event.to_json(), flush=True)
                n += 1
                if args.count and n >= args.count:
                    return

        pump_task = asyncio.ensure_future(pump())
        stop_task = asyncio.ensure_future(stop.wait())
        done, pending = await asyncio.wait([pump_task, stop_task], return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        if pump_task in done:
            pump_task.result()
        return 0
    except (BridgeClosed, TimeoutError) as exc:
        print(f"subscribe: {exc}", file=sys.stderr)
        return 1
    finally:
        await sub.close()


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m gathering_bridge", description="gathering-bridge client")
    sp = p.add_subparsers(dest="cmd", required=True)
    pp = sp.add_parser("publish", help="publish one event over gRPC")
    pp.add_argument("--target", default="127.0.0.1:50051", help="bridge gRPC address (host:port)")
    pp.add_argument("--channel", required=True)
    kind = pp.add_mutually_exclusive_group(required=True)
    kind.add_argument("--type", help="an event type of the proto: agent_message, file_changed, ...")
    kind.add_argument("--custom", metavar="TYPE", help="a custom event type (e.g. deploy.done)")
    pp.add_argument("--data", default="{}", help="payload as JSON (proto field names)")
    pp.add_argument("--timestamp", help="RFC 3339 time of the event (default: the bridge's)")
    pp.add_argument("--timeout", type=float, default=10.0)
    ss = sp.add_parser("subscribe", help="print events of a channel as JSON lines")
    ss.add_argument("url", help="ws://host:port/ws/<channel> (or ws://host:port with --channel); "
                                "?client= and ?token= in it are kept")
    ss.add_argument("--channel", action="append", help="more channels (multiplexed on /ws)")
    ss.add_argument("--client", help="identity when the bridge's auth is off (?client=)")
    ss.add_argument("--since", type=int, help="resume after this offset (with --epoch)")
    ss.add_argument("--epoch")
    ss.add_argument("--count", type=int, default=0, help="exit after this many events (control frames not counted)")
    ss.add_argument("--show-control", action="store_true", help="also print control frames (not counted)")
    ss.add_argument("--no-reconnect", action="store_true")
    ss.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the subscription")
    for q in (pp, ss):
        auth = q.add_mutually_exclusive_group()
        auth.add_argument("--token", help="a JWT (default $GATHERING_BRIDGE_TOKEN)")
        auth.add_argument("--api-key", help="an API key (--api_keys_file); gRPC only")
    args = p.parse_args(argv)
    if args.cmd == "publish":
        return _publish(args)
    return asyncio.run(_subscribe(args))


if __name__ == "__main__":
    sys.exit(main())
