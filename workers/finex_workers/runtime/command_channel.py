"""A worker's command channel (``finex workers stop``, rq's commands): listened to in a thread
that ends when Redis confirms the unsubscribe, so a stopping worker never waits on it.

Why not rq's listener (``PubSub.run_in_thread(sleep_time=60)``): its loop checks a stop flag
only between reads of up to 60 s, and rq stops it by sending UNSUBSCRIBE and then clearing the
flag. When the listener thread reads the UNSUBSCRIBE reply before the flag is cleared (a thread
switch at the wrong moment), it finds the flag still set and nothing subscribed, and goes back
to waiting, now in ``get_message``'s wait for a subscription, for the full 60 s. With redis-py
8, ``PubSubWorkerThread.stop()`` joins the thread without a bound, so the worker's exit waited
those 60 s (issue 25); with earlier redis-py, stop() did not join, and rq's own ``join(1)``
capped the cost at a second. Measured before this module: about one idle worker in eight
stopped by SIGINT hung, and more than one in three stopped by ``finex workers stop`` (its
listener thread is awake, having just handled the command).

Here the loop runs while the PubSub is subscribed, and the reply to our UNSUBSCRIBE is what
clears that: the listener ends right after Redis confirms, with no flag to race against and no
timeout on the stop path. The read timeout only paces the connection's health checks.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import redis

from finex_workers.runtime.redis_wait import delays

#: Longest read of the channel before the listener checks its connection's health (a PING when
#: ``health_check_interval`` has passed). A stop never waits for it.
READ_TIMEOUT = 30.0
#: Backoff while Redis is unreachable (first, cap), seconds; redis-py resubscribes on reconnect.
RECONNECT_BACKOFF = (0.5, 5.0)
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def only_main_thread_gets_stop_signals() -> None:
    """Block SIGINT and SIGTERM in the calling (helper) thread.

    The kernel may hand a process-directed signal to any thread that does not block it: it
    passes the main thread over when that one has a signal pending already, as when Ctrl-C's
    SIGINT and the supervisor's forwarded SIGTERM arrive together. Only the thread that takes a
    signal is interrupted, and Python runs the handler in the main thread once that thread runs
    Python code again: with a helper thread taking it while the main thread blocked in BLMOVE,
    the warm stop waited for the BLMOVE's timeout (up to 5 s; seen only with SIGINT to the
    group, never with the single signal of ``finex workers stop``).
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


class CommandListener:
    """Subscribes to one channel and hands each message to a handler, in a daemon thread."""

    def __init__(
        self,
        connection: redis.Redis,
        channel: str,
        handler: Callable[[dict[str, Any]], None],
        log: logging.Logger,
    ) -> None:
        self.channel = channel
        self.log = log
        self.pubsub = connection.pubsub()
        self._handler = handler
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="finex-commands")

    def start(self) -> None:
        """Send SUBSCRIBE (its confirmation is read by the thread) and start listening."""
        self.pubsub.subscribe(**{self.channel: self._handler})
        self.thread.start()

    def stop(self, timeout: float) -> bool:
        """Unsubscribe, wait at most `timeout` s for the listener to read Redis's confirmation,
        and close the connection. False when the listener had not ended by then."""
        self._stopping.set()
        try:
            self.pubsub.unsubscribe()
        except REDIS_DOWN as exc:
            self.log.warning("could not unsubscribe from %s (%s); closing", self.channel, exc)
        else:
            self.thread.join(timeout)
        ended = not self.thread.is_alive()
        self.pubsub.close()
        return ended

    def _run(self) -> None:
        only_main_thread_gets_stop_signals()
        backoff = delays(*RECONNECT_BACKOFF)
        # subscribe() marked the PubSub subscribed before the thread started; reading the reply
        # to the UNSUBSCRIBE that stop() sends is what unmarks it.
        while self.pubsub.subscribed:
            try:
                self.pubsub.get_message(ignore_subscribe_messages=True, timeout=READ_TIMEOUT)
                backoff = delays(*RECONNECT_BACKOFF)
            except REDIS_DOWN as exc:
                delay = next(backoff)
                self.log.error(
                    "lost Redis on the command channel %s (%s); retrying in %.1fs",
                    self.channel,
                    exc,
                    delay,
                )
                if self._stopping.wait(delay):
                    return
            except Exception:
                if self._stopping.is_set():  # stop() closed the connection under us
                    return
                # A malformed command must not leave the worker deaf to the next one.
                self.log.exception("a command on %s failed; still listening", self.channel)
