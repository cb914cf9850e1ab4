"""Where a server's time goes: py-spy samples of its process tree over the measured window (`--sample-server`),
the rules that sort frames into model, (de)serialisation, HTTP, framework and other, flame graphs, the model's
own cost, and the server's own Prometheus clock."""
