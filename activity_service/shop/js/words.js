// What each answer means, in words a shopper reads.

export function time(iso) {
  return new Date(iso).toLocaleString(undefined, {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export const LOST = "Lost connection to the shop. Check your network, then try again.";

const REFUSALS = {
  sold_out: "Sold out: every unit is taken. Units of unpaid orders may come back.",
  not_started: "Not started yet: wait for the countdown.",
  ended: "This sale has ended.",
  not_found: "This sale is no longer there.",
  challenge_failed: "The check that you are a person failed. Try again.",
  unauthorized: "Your session has ended: log in again.",
  token_revoked: "Your session has ended: log in again.",
  not_payable: "This order can no longer be paid.",
  not_cancellable: "This order can no longer be cancelled.",
  username_taken: "That username is taken: choose another.",
  invalid_credentials: "Wrong username or password.",
  account_disabled: "This account is disabled.",
  weak_password: "That password is too weak: use a longer one that is hard to guess.",
  invalid_request: "Check the username (3 to 32 letters, digits, . _ -) and password.",
};

// A wait the server asked for (429, 503), in words; null when the answer is no wait.
export function wait(reply) {
  if (reply.status === 429) return `Too many tries. Try again in ${reply.retryAfter ?? 1} s.`;
  if (reply.status === 503) return `The shop is busy. Try again in ${reply.retryAfter ?? 1} s.`;
  return null;
}

export function refusal(reply) {
  return (
    wait(reply) ??
    REFUSALS[reply.code] ??
    `Something went wrong (${reply.status}${reply.code ? ` ${reply.code}` : ""}). Try again.`
  );
}

export const STATUS = {
  created: "Waiting for payment",
  paid: "Paid",
  cancelled: "Cancelled",
  expired: "Expired",
};
