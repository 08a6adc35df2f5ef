"""One parser per MTA, plus a generic fallback: a log line -> a Delivery to Google, or None."""
