"""Connects to the sidecar's WebSocket and prints every message, one JSON object per line.

usage: ws_events.py URL SECONDS [MODEL_ID NEW_STATUS]
Stops after SECONDS, or once a model_availability_change of MODEL_ID to NEW_STATUS arrives.
Prints "connected" first, so the caller knows when to act.
"""
import asyncio
import json
import sys

import websockets


async def main(url, seconds, model=None, wanted=None):
    async with websockets.connect(url, open_timeout=10) as ws:
        print("connected", flush=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                text = await asyncio.wait_for(ws.recv(), timeout=left)
            except asyncio.TimeoutError:
                break
            print(text, flush=True)
            event = json.loads(text)
            if (event.get("type") == "model_availability_change" and event.get("model_id") == model
                    and event.get("new_status") == wanted):
                break


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], float(sys.argv[2]), *sys.argv[3:5]))
    except websockets.exceptions.InvalidStatus as error:
        print(f"rejected {error.response.status_code}", flush=True)
        sys.exit(3)
