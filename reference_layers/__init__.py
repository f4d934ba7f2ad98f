"""Reference channel layers for Django Channels 4, each passing the conformance suite in strict mode.

Use one as ``CHANNEL_LAYERS["default"]["BACKEND"]``:

- ``reference_layers.inmemory.InMemoryChannelLayer`` (one process; tests and development)
- ``reference_layers.ipc.IPCChannelLayer`` (processes on one machine, POSIX shared memory)
- ``reference_layers.redis.RedisChannelLayer`` (Redis, sharded by consistent hashing)
- ``reference_layers.rabbitmq.RabbitMQChannelLayer`` (RabbitMQ through pika)
"""
