"""gomail: an all-in-one mail server built as a milter-style plugin pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gomail-core")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

from gomail.hookspecs import hookimpl  # noqa: E402
from gomail.options import Option  # noqa: E402
from gomail.verdict import Action, Verdict  # noqa: E402

__all__ = ["Action", "Option", "Verdict", "__version__", "hookimpl"]
