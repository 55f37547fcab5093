"""What every benchmark needs: the service started as an operator would, wrk, the machine."""
