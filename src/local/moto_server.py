"""Runs moto's server on 127.0.0.1 for one test binary, and exits when that binary does.

The test harness keeps our stdin open; when the harness process ends, for any reason, the pipe
closes and this process exits, so no emulator outlives its tests.

DynamoDB's writes are atomic per item: a conditional write checks and writes in one step, which
is what makes the ledger's leases safe. moto's server handles requests on several threads and
does not lock its DynamoDB writes, so two concurrent conditional updates can both pass the
check. The writes are serialised here, so the emulator keeps DynamoDB's guarantee.
"""
import os
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_DYNAMODB_WRITES = threading.Lock()


def _atomic(write):
    def locked(self, *args, **kwargs):
        with _DYNAMODB_WRITES:
            return write(self, *args, **kwargs)

    return locked


for _name in ("put_item", "update_item", "delete_item", "transact_write_items"):
    setattr(DynamoDBBackend, _name, _atomic(getattr(DynamoDBBackend, _name)))


def exit_when_parent_goes():
    sys.stdin.read()
    os._exit(0)


threading.Thread(target=exit_when_parent_goes, daemon=True).start()
main(["-H", "127.0.0.1", "-p", sys.argv[1]])
