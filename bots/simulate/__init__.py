"""``peakdesk simulate``: a peak replayed against the whole pipeline, measured from outside.

The peakdesk under test is a real ``peakdesk serve`` subprocess (its own core); everything
around it runs in this process on one event loop, as the outside world would:

- :mod:`~bots.simulate.scenario` the traffic curve (baseline, ramp, hold, decay) and what
  ``--scale`` shrinks; :mod:`~bots.simulate.customers` who writes what and when (Bitext texts,
  bursts, follow-ups);
- :mod:`~bots.simulate.provider` an OpenAI-compatible provider with latency, limits and errors;
- :mod:`~bots.simulate.load` the gateway posting webhooks (retrying 503s with the same id);
  :mod:`~bots.simulate.sink` the gateway's callback endpoint;
- :mod:`~bots.simulate.peakdesk` the subprocess and its ``/metrics``;
- :mod:`~bots.simulate.analysis`, :mod:`~bots.simulate.report`, :mod:`~bots.simulate.chart`
  the figures, the verdicts and the files; :mod:`~bots.simulate.run` ties them together.
"""
