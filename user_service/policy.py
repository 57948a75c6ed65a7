"""The password policy for new passwords: a minimum length, a strength estimate, never the name.

The strength is zxcvbn's score (0-4: how many guesses an attacker who knows common
passwords, words, names, keyboard walks and the username would need). It applies when a
password is chosen; an account made under older rules still logs in with its password.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

# zxcvbn's time grows quickly with length; past this many characters only the start is
# estimated (a lower bound on the whole password's strength).
ESTIMATED_CHARACTERS = 72


def password_problems(password: str, username: str, min_length: int, min_score: int) -> list[str]:
    """What is wrong with password as a new one for username; empty when it may be used.

    CPU work of 1-15 ms: the caller runs it off the event loop.
    """
    if len(password) < min_length:
        return [f"must be at least {min_length} characters"]
    if username.lower() in password.lower():
        return ["must not contain the username"]
    estimate = zxcvbn(
        password[:ESTIMATED_CHARACTERS],
        user_inputs=[username],
        max_length=ESTIMATED_CHARACTERS,
    )
    if estimate["score"] >= min_score:
        return []
    feedback = estimate["feedback"]
    hints = " ".join(filter(None, [feedback["warning"], *feedback["suggestions"]]))
    message = f"is too easy to guess (strength {estimate['score']} of 4, {min_score} needed)"
    return [f"{message}: {hints}" if hints else message]
