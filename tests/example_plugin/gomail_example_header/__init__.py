"""An example third-party plugin: adds ``X-Gomail-Example: <value>`` to every message.

It is installed through its entry point exactly as a plugin from PyPI would be, and proves
that path in the tests.
"""

from gomail import hookimpl
from gomail.options import Option


@hookimpl
def gomail_plugin_options():
    return {"value": Option(str, "seen", "the header's value")}


@hookimpl
async def gomail_data(message, options):
    message.add_header("X-Gomail-Example", options["value"])
