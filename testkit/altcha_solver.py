"""Solve an ALTCHA challenge as a browser's widget does, for the load tools and the tests.

python -m testkit.altcha_solver < challenge.json   # prints the X-Altcha value

Both of the seckill's formats: v2 (GET /activities/{id}/challenge, the widget 3.x's
default) and v1 (GET /activities/{id}/challenge/v1).
"""

from __future__ import annotations

import base64
import json
import sys

import altcha


def solve(challenge: dict) -> str:
    """The X-Altcha header value for a challenge from GET /activities/{id}/challenge(/v1)."""
    if "parameters" in challenge:
        issued = altcha.Challenge.from_dict(challenge)
        solution = altcha.solve_challenge(issued)
        if solution is None:
            raise ValueError("the challenge was not solved in time")
        return altcha.Payload(issued, solution).to_base64()
    return solve_v1(challenge)


def solve_v1(challenge: dict) -> str:
    solution = altcha.solve_challenge_v1(
        challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxNumber"]
    )
    if solution is None:
        raise ValueError("the challenge has no solution up to its maxNumber")
    payload = {
        "algorithm": challenge["algorithm"],
        "challenge": challenge["challenge"],
        "number": solution.number,
        "salt": challenge["salt"],
        "signature": challenge["signature"],
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


if __name__ == "__main__":
    print(solve(json.load(sys.stdin)))
