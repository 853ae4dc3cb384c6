"""``python -m data``: corpus statistics for the current settings."""

from __future__ import annotations

from wordrnn.core.errors import start_command

if __name__ == "__main__":
    start_command()  # a missing library or a Ctrl-C during the imports: one line

import numpy as np  # noqa: E402

from data.dataset import load_dataset  # noqa: E402
from wordrnn.core.errors import CommandParser, cli  # noqa: E402
from wordrnn.core.flags import add_data_flags, data_config  # noqa: E402


@cli
def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(
        prog="python -m data",
        description="Print corpus statistics (poems, tokens, vocabulary, windows, validation OOV rate) "
        "for the given data settings.",
    )
    add_data_flags(parser)
    args = parser.parse_args(argv)
    config = data_config(args)
    ds = load_dataset(**config.dataset_args())
    n_train_tok = int(sum(len(p) for p in ds.train_ids))
    n_val_tok = int(sum(len(p) for p in ds.val_ids))
    rows = [
        ("corpus", str(ds.source)),
        ("poems told apart by", ds.separator),
        ("poems (train / validation)",
         f"{len(ds.train_ids) + len(ds.val_ids)} ({len(ds.train_ids)} / {len(ds.val_ids)})"),
        ("tokens (train / validation)", f"{n_train_tok + n_val_tok} ({n_train_tok} / {n_val_tok})"),
        ("tokenizer", config.tokenizer),
        (f"vocabulary (min-freq {config.min_freq}, with <unk>)", str(len(ds.vocab))),
        ("<unk> share of training tokens", f"{np.mean(np.concatenate(ds.train_ids) == ds.vocab.unk_id):.2%}"),
        (f"windows of {config.seq_len} (train / validation)", f"{len(ds.train_x)} / {len(ds.val_x)}"),
        ("validation targets out of vocabulary", f"{ds.val_oov_rate:.2%}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
