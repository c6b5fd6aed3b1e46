"""The llama.cpp inference runtime for kaito, through llama-cpp-python."""
