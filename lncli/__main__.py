"""Allow ``python -m lncli`` (and ``torchrun -m lncli``)."""

from lncli.cli import main

if __name__ == "__main__":
    main()
