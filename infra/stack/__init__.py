"""The local stack: private RabbitMQ, PostgreSQL and Redis as ordinary processes.

Everything lives under `settings.stack_dir` (default `<repo>/.hisho/stack/`): `run/*.pid`
(pid records), `logs/*.log`, one data dir per service and `ports.json` (the ports in use,
read by `Settings.stack_ports`). Servers listen on 127.0.0.1 only.

The API is synchronous; from async tests call it in a thread::

    stack = Stack(load_settings())              # or Settings(stack_dir=tmp, stack_*_port=...)
    stack.up()                                  # -> names of the services it started
    await asyncio.to_thread(stack.kill_service, "rabbitmq")   # SIGKILL, like a crash
    await asyncio.to_thread(stack.start_service, "rabbitmq")  # same ports as before
    stack.status()                              # -> [ServiceStatus(name, port, pid, health, log)]
    stack.down()

`stop_service` stops gracefully, `kill_service` crashes a service (its pid record stays, so
`crashed(services)` names it), `start_service` brings it back; `pids()` lists live recorded
processes, `rabbitmqctl(*args)` talks to the private node, `using(services)` holds services
up for a block (what `hisho stack exec` does).
"""

from infra.stack.launcher import SERVICES, ServiceStatus, Stack
from infra.stack.process import StackError

__all__ = ["SERVICES", "ServiceStatus", "Stack", "StackError"]
