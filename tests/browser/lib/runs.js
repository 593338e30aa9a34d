// Helpers the page tests share: the latest run's panel, and waiting for it to end.

/** The latest run's panel. */
export const lastRun = (page) => page.locator(".turn").last().locator(".run");

/** Waits until the latest run leaves "running"; returns its final state. */
export async function settled(page, timeout) {
  await page.waitForFunction(() => [...document.querySelectorAll(".run")].at(-1)?.dataset.state !== "running", null, {
    timeout,
  });
  return lastRun(page).getAttribute("data-state");
}
