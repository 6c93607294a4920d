/** Label selectors as Kubernetes evaluates them (matchLabels AND every matchExpression). */
import type { Labels, Selector } from "./objects.ts"

/** Whether `labels` satisfy `selector`; `{}` matches everything, and NotIn / DoesNotExist match an absent key. */
export const matches = (selector: Selector, labels: Labels): boolean =>
  selector.matchLabels.every(([key, value]) => labels[key] === value) &&
  selector.expressions.every(({ key, operator, values }) => {
    const value = labels[key]
    switch (operator) {
      case "In":
        return value !== undefined && values.includes(value)
      case "NotIn":
        return value === undefined || !values.includes(value)
      case "Exists":
        return value !== undefined
      case "DoesNotExist":
        return value === undefined
    }
  })
