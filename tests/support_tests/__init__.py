"""Tests of the test support itself: the private Redis and the fake arXiv and OpenAI servers."""
