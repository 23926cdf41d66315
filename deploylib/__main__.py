"""``python -m deploylib`` and the ``deploylib`` program."""

from deploylib.collector import quiet_collector


def run() -> None:
    # before the program's imports: they make objects that live as long as the process
    quiet_collector()
    from deploylib.cli import main

    main()


if __name__ == "__main__":
    run()
