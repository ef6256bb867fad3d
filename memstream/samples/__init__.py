"""Sample data for the demo, the benchmarks and the tests: a generated memory stream, facts about
made-up people told and asked in other words, and a stream of public text in several domains."""
