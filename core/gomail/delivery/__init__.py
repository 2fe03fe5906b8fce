"""Outbound delivery: the queue runner that takes mail from the durable queue to other servers.

:class:`QueueRunner` (started by ``Server.start`` after the listeners, stopped before the
store closes) looks at the queue every ``delivery.poll_interval`` seconds (or when woken),
groups the due entries by transaction and destination domain, and gives each group one SMTP
transaction, under a per-domain and a global connection limit. See :mod:`.runner`.
"""

from gomail.delivery.runner import QueueRunner, strip_return_path

__all__ = ["QueueRunner", "strip_return_path"]
