"""What travels on the wire.

Messages and their decoding, flag states and their signatures, bucketing and evaluation,
app keys.
"""
