"""Write a folder of simulated room impulse responses for `asr train --rir-dir` and `perturb.py --rirs`.

AN4 was recorded close to the microphone; a laptop or a phone on a table hears the same speech through
a room. No measured RIR corpus (OpenSLR's RIRS_NOISES and the like) can be downloaded where this recipe
runs, so the rooms are simulated with pyroomacoustics' image-source method: shoebox rooms from a small
office to a classroom (3-10 m long, 3-8 m wide, 2.4-4 m high), a reverberation time (RT60) drawn from
--rt60, the talker and the microphone at sitting or standing height, at least 0.5 m from every wall, and
--distance apart. The wall absorption that gives the RT60 comes from Sabine's formula.

Usage:
    pip install -e ".[recipes]"    # pyroomacoustics
    python recipes/an4/make_rirs.py --out data/an4-rirs/train --count 400 --seed 0
    python recipes/an4/make_rirs.py --out data/an4-rirs/test --count 200 --seed 1   # other rooms, for tests

Writes rir-NNNN.wav (float32, 16 kHz, mono) and rooms.jsonl (each room's size, RT60 and positions).
Deterministic for a given --seed and pyroomacoustics version.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile

from asr.atomic import atomic_open, atomic_write_text
from asr.audio import SAMPLE_RATE

ROOM_LOW, ROOM_HIGH = np.array([3.0, 3.0, 2.4]), np.array([10.0, 8.0, 4.0])  # length, width, height (m)
WALL_MARGIN = 0.5  # m between the talker or the microphone and any wall
HEIGHTS = (1.0, 1.9)  # m above the floor: a table's microphone to a standing talker's mouth
MAX_ORDER = 60  # reflections per path; higher orders of long rooms cost minutes and add only the far tail


def _range(text: str) -> tuple[float, float]:
    low, high = (float(x) for x in text.split(","))
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"expected 0 < LOW <= HIGH, got {text!r}")
    return low, high


def _position(rng: np.random.Generator, room: np.ndarray) -> np.ndarray:
    x, y = rng.uniform(WALL_MARGIN, room[:2] - WALL_MARGIN)
    return np.array([x, y, rng.uniform(*HEIGHTS)])


def draw_room(rng: np.random.Generator, rt60: tuple[float, float], distance: tuple[float, float],
              tries: int = 1000) -> dict:
    """A room, an RT60 and two positions `distance` apart. Raises ValueError if none fits in `tries` draws
    (a distance larger than the rooms allow)."""
    import pyroomacoustics as pra

    for _ in range(tries):
        room = rng.uniform(ROOM_LOW, ROOM_HIGH)
        seconds = rng.uniform(*rt60)
        talker, mic = _position(rng, room), _position(rng, room)
        if not distance[0] <= np.linalg.norm(talker - mic) <= distance[1]:
            continue
        try:  # Sabine's formula asks for more than total absorption when a large room must be very dry
            absorption, order = pra.inverse_sabine(seconds, room)
        except ValueError:
            continue
        return {"room": room.round(3).tolist(), "rt60": round(seconds, 3), "absorption": round(absorption, 4),
                "max_order": min(order, MAX_ORDER), "talker": talker.round(3).tolist(), "mic": mic.round(3).tolist(),
                "distance": round(float(np.linalg.norm(talker - mic)), 3)}
    raise ValueError(f"no room of {ROOM_LOW}-{ROOM_HIGH} m fits a talker {distance[0]}-{distance[1]} m from the "
                     f"microphone at RT60 {rt60[0]}-{rt60[1]} s")


def simulate(spec: dict) -> np.ndarray:
    """The impulse response at the microphone, float32 at 16 kHz."""
    import pyroomacoustics as pra

    room = pra.ShoeBox(spec["room"], fs=SAMPLE_RATE, materials=pra.Material(spec["absorption"]),
                       max_order=spec["max_order"])
    room.add_source(spec["talker"])
    room.add_microphone(spec["mic"])
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder to write the impulse responses to")
    ap.add_argument("--count", type=int, default=400, help="how many rooms")
    ap.add_argument("--rt60", type=_range, default=(0.1, 1.0), metavar="LOW,HIGH",
                    help="reverberation time range in seconds (default 0.1,1.0: a furnished office to a hall)")
    ap.add_argument("--distance", type=_range, default=(0.3, 3.0), metavar="LOW,HIGH",
                    help="talker-microphone distance range in metres (default 0.3,3.0)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        import pyroomacoustics  # noqa: F401
    except ImportError:
        ap.exit(1, "make_rirs.py needs pyroomacoustics: pip install -e \".[recipes]\"\n")
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    rooms = []
    for i in range(args.count):
        spec = {"file": f"rir-{i:04d}.wav", **draw_room(rng, args.rt60, args.distance)}
        with atomic_open(out / spec["file"]) as f:
            soundfile.write(f, simulate(spec), SAMPLE_RATE, format="WAV", subtype="FLOAT")
        rooms.append(spec)
    atomic_write_text(out / "rooms.jsonl", "".join(json.dumps(r) + "\n" for r in rooms))
    rt = [r["rt60"] for r in rooms]
    print(f"{out}: {len(rooms)} rooms, RT60 {min(rt):.2f}-{max(rt):.2f} s (median {np.median(rt):.2f})")


if __name__ == "__main__":
    main()
