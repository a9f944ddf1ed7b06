"""Prints a CloudFormation/SAM template as JSON, with short-form intrinsics (!Ref, !Sub, ...)
in their long form ({"Ref": ...}, {"Fn::Sub": ...}), using cfn-lint's own template decoder."""
import json
import sys

from cfnlint.decode import decode

template, errors = decode(sys.argv[1])
if errors or template is None:
    for e in errors or []:
        print(e, file=sys.stderr)
    sys.exit(1)
json.dump(template, sys.stdout, default=str)
