"""The networks: conditioning mechanisms, instruction and game encoders, the FiLM generator, the
FiLM-ed CNNs, and their SB3 features extractors and policies. Nothing here knows about runs."""
