"""Joining a multi-process run (`main.py --distributed`): one JAX process per host, the same command
on every host. `init_distributed(spec)` before JAX starts; a malformed or unjoinable spec is a
`DistributedError`, one line in seconds (JAX itself segfaults on a busy coordinator port and aborts
after 5 minutes on an address that does not reach process 0)."""
import os
import socket

import jax


class DistributedError(ValueError):
  """--distributed is malformed, or JAX could not join the multi-process run it names."""


_SPEC = "expected 'auto' or ADDRESS:PORT,NUM_PROCESSES,PROCESS_ID, e.g. 127.0.0.1:1234,2,0"


def _host_port(address):
  host, _, port = address.rpartition(':')
  return host.strip('[]'), int(port)


def parse_distributed(spec):
  """(address, num_processes, process_id) of an explicit --distributed, checked."""
  try:
    address, num, index = spec.split(',')
    num, index = int(num), int(index)
    host, port = _host_port(address)
  except ValueError:
    raise DistributedError(f'--distributed={spec!r}: {_SPEC}') from None
  if not host or not 0 < port < 65536 or not 0 <= index < num:
    raise DistributedError(f'--distributed={spec!r}: needs a host, a port in 1..65535 and '
                           f'0 <= PROCESS_ID < NUM_PROCESSES; {_SPEC}')
  return address, num, index


def _reason(err):
  return os.strerror(err.errno) if err.errno else str(err)


def check_coordinator(address, timeout=5.):
  """Process 0 hosts JAX's coordination service on PORT, and its own client connects to
  ADDRESS:PORT: check both in seconds (JAX segfaults on a busy port and aborts after 5 minutes
  on an address that does not reach this machine)."""
  host, port = _host_port(address)
  dual = socket.has_dualstack_ipv6()
  try:
    server = socket.create_server(('', port), family=socket.AF_INET6 if dual else socket.AF_INET,
                                  dualstack_ipv6=dual)
  except OSError as err:
    raise DistributedError(f'--distributed: port {port} is busy on this machine ({_reason(err)}); '
                           "another run's coordinator? give every process another PORT") from None
  with server:
    try:
      socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
      raise DistributedError(
          f'--distributed: {address} does not reach this machine ({_reason(err)}); '
          'process 0 runs the coordinator: start it on the host ADDRESS names') from None


def init_distributed(spec):
  """Join a multi-process run before JAX starts (`main.py --distributed`): '' = one process;
  'auto' = jax.distributed's detection (TPU pods, SLURM, Open MPI, Kubernetes);
  'ADDRESS:PORT,NUM_PROCESSES,PROCESS_ID' = explicit, e.g. '10.0.0.1:1234,2,0'.
  Returns this process's index; a DistributedError (one line) where it cannot join."""
  if not spec:
    return jax.process_index()
  args = {} if spec == 'auto' else dict(zip(('coordinator_address', 'num_processes', 'process_id'),
                                            parse_distributed(spec)))
  if args.get('process_id') == 0:
    check_coordinator(args['coordinator_address'])
  try:
    jax.distributed.initialize(**args)
  except (ValueError, jax.errors.JaxRuntimeError) as err:     # not: JAX already started (a bug)
    where = ('no cluster was detected (TPU pod, SLURM, Open MPI, Kubernetes); on one machine leave '
             '--distributed out, elsewhere give ADDRESS:PORT,NUM_PROCESSES,PROCESS_ID'
             if spec == 'auto' and isinstance(err, ValueError) else 'check that process 0 runs '
             'on the coordinator ADDRESS and that its PORT is reachable from every host')
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    raise DistributedError(f'--distributed={spec!r}: JAX could not join the run ({first}); '
                           f'{where}') from None
  return jax.process_index()
