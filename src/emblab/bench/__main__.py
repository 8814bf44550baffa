from emblab import cli
from emblab.bench.throughput import Args, main

cli.main(Args, main)
