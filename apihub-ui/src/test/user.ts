// A user-event instance tuned for antd under jsdom: no delays, no pointer-events check (it calls
// getComputedStyle on every ancestor for each event), and a fast "type": focus then paste, one
// input event instead of one per key.
import { screen, within } from '@testing-library/react';
import userEvent, { PointerEventsCheckLevel } from '@testing-library/user-event';

export const user = userEvent.setup({ delay: null, pointerEventsCheck: PointerEventsCheckLevel.Never });

export async function fillIn(element: HTMLElement, text: string) {
  await user.click(element);
  await user.paste(text);
}

/** The open modal whose title is `title`. */
export async function findDialog(title: string): Promise<HTMLElement> {
  const heading = await screen.findByText(title, { selector: '.ant-modal-title' });
  return heading.closest('.ant-modal') as HTMLElement;
}

/**
 * The button labelled `name` (its text), in `container` or the page. Found by text rather than
 * by role: role queries compute accessible names for the whole tree and take seconds on antd pages.
 */
export async function findButton(name: string | RegExp, container: HTMLElement = document.body): Promise<HTMLButtonElement> {
  const label = await within(container).findByText(name, { selector: 'button, button *' });
  return label.closest('button') as HTMLButtonElement;
}
