"""What every reference layer shares, one job per module; each uses only those above it:

- errors: ChannelFull, MessageTooLarge, UnserialisableMessage, LayerConfigError,
  ForeignProcessChannel
- names: channel and group name rules, ``non_local_name``, ``ChannelNamer`` (new_channel)
- config: positive numbers and ints in CONFIG, unknown keys refused
- codec: what a message may hold, msgpack, optional encryption, the size limit
- capacity: ``CapacityRules`` (capacity, then ``channel_capacity`` patterns)
- layer_core: ``LayerCore``, the public API with every check made once
- loops: ``PerLoop``, state per event loop closed before that loop closes (stands alone)
- statistics: what ``await layer.statistics()`` answers (stands alone)
- heartbeat: whether an event loop ran lately, for flushes that wait for loops (stands alone)
- stats_command: ``python -m reference_layers.redis --stats`` and its RabbitMQ twin (stands alone)

Layers import the module they need (``from ..core.names import non_local_name``); this
package imports none of them, so importing one module loads only its own chain.
``reference_layers.base`` re-exports the public names for code written before the split.
"""
