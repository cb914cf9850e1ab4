"""Where a server's time goes: sampled profiles of its process tree during the measured window (py-spy),
the rules that sort frames into model, (de)serialisation, HTTP, framework and other, and flame graphs."""
