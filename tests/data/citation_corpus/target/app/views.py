"""Request handlers."""

import pickle
import subprocess

from app.auth import check_token
from app.db import find_user


def run_report(params):
    expression = params.get("expr", "0")
    return eval(expression)


def export(params):
    target = params["target"]
    return subprocess.run(f"tar czf {target} data/", shell=True)


def load_session(blob):
    return pickle.loads(blob)


def profile(request):
    if not check_token(request.headers.get("X-Token", ""), "letmein"):
        return {"error": "forbidden"}
    try:
        user = find_user(request.args["name"])
    except:
        user = None
    return {"user": user}
