"""Allow `python -m glmtune ...` (and `torchrun -m glmtune ...`)."""

from glmtune.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
