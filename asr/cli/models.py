"""`asr models`: the bundled models, what each knows and how well (from each folder's card.json)."""

from __future__ import annotations


def add_models(sub) -> None:
    p = sub.add_parser("models", help="list the bundled models (use one with --model NAME)",
                       description="List the bundled models: name, size on disk (checkpoint and LM), what each "
                                   "was trained on and its dev WER (greedy / default decoder). Any command's "
                                   "--model takes one of these names, a checkpoint file, or a folder with model.pt.")
    p.set_defaults(func=_models)


def _models(args) -> int:
    from asr.catalog import DEFAULT, available, models_dir

    found = available()
    if not found:
        print(f"no bundled model in {models_dir()}")
        return 1
    for m in found:
        print(f"{m.name}{' (default)' if m.name == DEFAULT else ''}: {m.size_mb:.1f} MB, {m.path.parent}")
        if m.description:
            print(f"  {m.description}")
        if m.trained_on:
            print(f"  trained on: {m.trained_on}")
        for dev, wer in m.dev_wer.items():
            print(f"  dev WER, greedy / default decoder: {wer} on {dev}")
    return 0
