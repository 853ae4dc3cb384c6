"""Train a wordrnn model with JAX/Flax: ``python -m jaxmodels.train --help``.

The shared flags, plus where to run: ``--accelerator`` and ``--devices`` pick the
devices (data parallel over all of them by default), and ``--coordinator-address``,
``--num-processes``, ``--process-id`` join a multi-host run before JAX looks
at any device (importing jax, flax and optax starts no backend).

JAX, Flax and optax (and the loop's NumPy) are imported inside the functions, under the command's
``@cli``: a Ctrl-C during those seconds of imports is then one ``interrupted`` line, and a Python
without them one line saying how to install them, where a module-level import would end in a traceback.
"""

from __future__ import annotations

import argparse

from wordrnn.core.hugepages import exec_with_huge_pages
from wordrnn.core.interrupt import quit_on_ctrl_c

quit_on_ctrl_c()  # before the imports below: a Ctrl-C while they load is one line too

from wordrnn.core.errors import UsageError, cli  # noqa: E402
from wordrnn.core.flags import shared_parser  # noqa: E402
from wordrnn.core.threads import limit_threads  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    from jaxmodels import devices as devs

    parser = shared_parser("Train the word-level RNN language model with JAX/Flax NNX.",
                           prog="python -m jaxmodels.train")
    g = parser.add_argument_group("jax")
    g.add_argument("--accelerator", default="auto", choices=devs.ACCELERATORS,
                   help="platform to run on; auto: the best one present (tpu, then gpu, then cpu). "
                        "An absent platform is an error, never a silent fall-back")
    g.add_argument("--devices", type=int, default=None, metavar="N",
                   help="data-parallel over N devices of that platform (default: all local ones); on the CPU, "
                   "N devices are made for it (XLA's --xla_force_host_platform_device_count)")
    g.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                   help="multi-host: address of process 0; starts jax.distributed before anything else")
    g.add_argument("--num-processes", type=int, default=None, help="multi-host: number of processes")
    g.add_argument("--process-id", type=int, default=None, help="multi-host: this process's rank, 0-based")
    return parser


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from jaxmodels import devices as devs
    from jaxmodels.backend import JaxBackend
    from wordrnn.run.loop import train_from_args

    limit_threads(args.threads)  # XLA reads its thread flag when the backend starts: before any device query
    devs.request_cpu_devices(args.accelerator, args.devices)  # likewise its count of CPU devices
    if args.coordinator_address:
        devs.init_distributed(args.coordinator_address, args.num_processes, args.process_id)
    elif args.num_processes is not None or args.process_id is not None:
        raise UsageError("--num-processes and --process-id need --coordinator-address")
    devices = devs.select_devices(args.accelerator, args.devices)
    if not args.quiet:
        print(f"jax devices: {devs.describe(devices)}")
    extra = {"accelerator": devices[0].platform, "devices": len(devices)}
    if args.coordinator_address:
        extra["num_processes"] = args.num_processes
    return train_from_args(args, JaxBackend(devices), extra=extra)


if __name__ == "__main__":
    exec_with_huge_pages()
    raise SystemExit(main())
