"""What both venue adapters share: the order tracker, sockets, books, HTTP, retries, budget."""
