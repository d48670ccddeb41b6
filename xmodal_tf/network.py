"""Whether the internet is reachable, asked before a download that would otherwise hang.

``tensorflow_datasets`` retries an offline download for minutes and ``keras.applications``
fails deep inside ``get_file``; a quick probe first lets the data loaders
(``xmodal_tf.data``) and the backbone encoders (``xmodal_tf.encoders``) fail fast with a
message saying what to do instead. Standard library only.

    >>> from xmodal_tf.network import network_reachable
    >>> network_reachable("storage.googleapis.com")        # True online, False offline
"""

from __future__ import annotations

import socket
import threading

__all__ = ["PROBE_TIMEOUT_S", "network_reachable"]

#: How long a probe waits for a connection, in seconds.
PROBE_TIMEOUT_S = 3.0


def network_reachable(host: str, port: int = 443, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if a TCP connection to ``host:port`` opens within about ``timeout_s`` seconds.

    Args:
        host: a host name or IP address, e.g. "storage.googleapis.com".
        port: the TCP port (443, HTTPS, by default).
        timeout_s: the longest wait in seconds, DNS lookup included.

    Returns:
        Whether the connection opened (it is closed again at once).
    """
    opened = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                opened.append(True)
        except OSError:
            pass

    # A thread, because the DNS lookup inside create_connection ignores the timeout.
    thread = threading.Thread(target=probe, name="xmodal-network-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(opened)
