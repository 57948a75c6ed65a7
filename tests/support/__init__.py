"""What the test layers share: data factories, expectations, doubles, the browser, stacks."""
