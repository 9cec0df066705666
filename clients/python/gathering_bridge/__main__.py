"""Command line:

  python3 -m gathering_bridge publish --target 127.0.0.1:50051 --channel circles/dev-team \\
      --type agent_message --data '{"agent_id":7,"content":"hi"}'
  python3 -m gathering_bridge subscribe ws://127.0.0.1:8080/ws/circles/dev-team [--count N]

`publish` prints the response as one JSON line; `subscribe` prints one JSON line per event (the
frame as received) on stdout, and connection notices on stderr.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from datetime import datetime
from typing import List, Optional

import grpc
from google.protobuf import json_format


def _publish(args: argparse.Namespace) -> int:
    from .publisher import BridgePublisher

    try:
        data = json.loads(args.data) if args.data else {}
    except ValueError as exc:
        print(f"publish: --data is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print("publish: --data must be a JSON object", file=sys.stderr)
        return 2
    ts = datetime.fromisoformat(args.timestamp.replace("Z", "+00:00")) if args.timestamp else None
    with BridgePublisher(args.target, timeout=args.timeout) as pub:
        try:
            res = pub.publish(args.channel, args.type, data, timestamp=ts)
        except json_format.ParseError as exc:
            print(f"publish: --data does not fit {args.type}: {exc}", file=sys.stderr)
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

    if args.since is not None or args.epoch is not None:
        if args.since is None or args.epoch is None:
            print("subscribe: --since and --epoch go together", file=sys.stderr)
            return 2
    def note(msg: str) -> None:
        print(f"# {msg}", file=sys.stderr, flush=True)

    sub = BridgeSubscriber(
        args.url,
        channels=args.channel or (),
        token=args.token,
        reconnect=not args.no_reconnect,
        on_state=lambda s: note(f"state {s}"),
        on_subscribed=lambda f: note(
            f"subscribed {f.get('channel')} epoch={f.get('epoch')} offset={f.get('offset')}"
            + (f" recovered={str(f.get('recovered')).lower()}" if "recovered" in f else "")),
        on_gap=lambda g: note(f"gap {g.channel} from {g.first} to {g.last if g.last is not None else '?'}"
                              + (" (epoch changed)" if g.epoch_changed else "")),
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
    pp.add_argument("--type", required=True, help="agent_message, file_changed, ... or a custom type")
    pp.add_argument("--data", default="{}", help="payload as JSON (proto field names)")
    pp.add_argument("--timestamp", help="RFC 3339 time of the event (default: the bridge's)")
    pp.add_argument("--timeout", type=float, default=10.0)
    ss = sp.add_parser("subscribe", help="print events of a channel as JSON lines")
    ss.add_argument("url", help="ws://host:port/ws/<channel> (or ws://host:port with --channel)")
    ss.add_argument("--channel", action="append", help="more channels (multiplexed on /ws)")
    ss.add_argument("--token")
    ss.add_argument("--since", type=int, help="resume after this offset (with --epoch)")
    ss.add_argument("--epoch")
    ss.add_argument("--count", type=int, default=0, help="exit after this many events")
    ss.add_argument("--no-reconnect", action="store_true")
    ss.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the subscription")
    args = p.parse_args(argv)
    if args.cmd == "publish":
        return _publish(args)
    return asyncio.run(_subscribe(args))


if __name__ == "__main__":
    sys.exit(main())
