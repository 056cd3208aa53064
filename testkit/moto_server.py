"""moto_server with the one behaviour kiln's tests need that moto lacks.

moto evaluates every IAM policy against the resource "*", so a policy that denies one SSM
parameter denies nothing. AWS evaluates ssm:GetParameter(s) against each parameter's ARN (and a
GetParameters call naming a denied parameter is refused as a whole). This shim makes moto do the
same for SSM reads; signature checks and every other action are moto's own.

Run as: python moto_server.py -H HOST -p PORT  (the arguments of moto_server).
"""

import json
import sys

from moto.server import main
from moto.ssm.responses import SimpleSystemManagerResponse

_authorize = SimpleSystemManagerResponse._authenticate_and_authorize_normal_action


def _parameter_arn(response, name):
    if name.startswith("arn:"):
        return name.rsplit(":", 1)[0] if name.count(":") > 5 else name
    name = name.split(":", 1)[0]
    return f"arn:aws:ssm:{response.region}:{response.current_account}:parameter/{name.lstrip('/')}"


def _authorize_per_parameter(self, resource="*"):
    action = self._get_action()
    try:
        body = json.loads(self.body or "{}")
    except ValueError:
        body = {}
    if action == "GetParameters" and body.get("Names"):
        for name in body["Names"]:
            _authorize(self, _parameter_arn(self, name))
        return
    if action == "GetParameter" and body.get("Name"):
        return _authorize(self, _parameter_arn(self, body["Name"]))
    if action == "GetParametersByPath" and body.get("Path"):
        return _authorize(self, _parameter_arn(self, body["Path"]))
    return _authorize(self, resource)


SimpleSystemManagerResponse._authenticate_and_authorize_normal_action = _authorize_per_parameter

if __name__ == "__main__":
    main(sys.argv[1:])
