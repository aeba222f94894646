// Labelled form controls on Headless UI's Field: the label, the hint and the error message are
// tied to the control (aria-labelledby / aria-describedby / aria-invalid) by Headless UI.
// Kept free of dialogs and menus so the login page's bundle stays small.

import { Button as HButton, Description, Field, Input, Label, Select, Textarea } from "@headlessui/react";
import type { ComponentProps, InputHTMLAttributes, ReactNode, Ref, SelectHTMLAttributes, TextareaHTMLAttributes } from "react";

export function cx(...parts: (string | false | null | undefined)[]): string {
  return parts.filter(Boolean).join(" ");
}

const control =
  "block w-full rounded-md border bg-white px-3 py-2 text-base text-slate-900 shadow-sm sm:text-sm " +
  "placeholder:text-slate-400 focus:outline-none data-focus:ring-2 data-focus:ring-sky-600 data-focus:border-sky-600 " +
  "data-disabled:bg-slate-100 data-disabled:text-slate-500";

function controlClass(invalid: boolean, extra?: string) {
  return cx(control, invalid ? "border-red-500 data-focus:ring-red-600" : "border-slate-300", extra);
}

interface FieldProps {
  label: ReactNode;
  error?: string | null;
  hint?: ReactNode;
  className?: string;
}

type InputProps = Omit<InputHTMLAttributes<HTMLInputElement>, "className"> & { ref?: Ref<HTMLInputElement>; "data-testid"?: string };
type TextareaProps = Omit<TextareaHTMLAttributes<HTMLTextAreaElement>, "className"> & { ref?: Ref<HTMLTextAreaElement>; "data-testid"?: string };
type SelectProps = Omit<SelectHTMLAttributes<HTMLSelectElement>, "className"> & { ref?: Ref<HTMLSelectElement> };

export function TextField({ label, error, hint, className, ...input }: FieldProps & InputProps) {
  return (
    <Field className={cx("space-y-1", className)}>
      <Label className="block text-sm font-medium text-slate-700">{label}</Label>
      <Input {...input} invalid={!!error} className={controlClass(!!error)} />
      {hint && !error && <Description className="text-xs text-slate-500">{hint}</Description>}
      {error && (
        <Description className="text-sm text-red-700" data-field-error="">
          {error}
        </Description>
      )}
    </Field>
  );
}

export function TextAreaField({ label, error, hint, className, ...input }: FieldProps & TextareaProps) {
  return (
    <Field className={cx("space-y-1", className)}>
      <Label className="block text-sm font-medium text-slate-700">{label}</Label>
      <Textarea {...input} invalid={!!error} className={controlClass(!!error)} />
      {hint && !error && <Description className="text-xs text-slate-500">{hint}</Description>}
      {error && (
        <Description className="text-sm text-red-700" data-field-error="">
          {error}
        </Description>
      )}
    </Field>
  );
}

export function SelectField({ label, error, hint, className, children, ...input }: FieldProps & SelectProps) {
  return (
    <Field className={cx("space-y-1", className)}>
      <Label className="block text-sm font-medium text-slate-700">{label}</Label>
      <Select {...input} invalid={!!error} className={controlClass(!!error, "pr-8")}>
        {children}
      </Select>
      {hint && !error && <Description className="text-xs text-slate-500">{hint}</Description>}
      {error && (
        <Description className="text-sm text-red-700" data-field-error="">
          {error}
        </Description>
      )}
    </Field>
  );
}

type Variant = "primary" | "secondary" | "danger" | "ghost" | "success";

const variants: Record<Variant, string> = {
  primary: "bg-sky-700 text-white hover:bg-sky-800 data-hover:bg-sky-800 shadow-sm",
  success: "bg-emerald-700 text-white data-hover:bg-emerald-800 shadow-sm",
  secondary: "bg-white text-slate-800 ring-1 ring-inset ring-slate-300 data-hover:bg-slate-50 shadow-sm",
  danger: "bg-red-700 text-white data-hover:bg-red-800 shadow-sm",
  ghost: "text-slate-700 data-hover:bg-slate-100",
};

export function Button({ variant = "primary", className, busy, children, ...rest }: ComponentProps<typeof HButton> & { variant?: Variant; busy?: boolean }) {
  return (
    <HButton
      {...rest}
      disabled={rest.disabled || busy}
      className={cx(
        "inline-flex min-h-10 items-center justify-center gap-2 rounded-md px-4 py-2 text-sm font-semibold",
        "focus:outline-none data-focus:outline-2 data-focus:outline-offset-2 data-focus:outline-sky-600",
        "data-disabled:cursor-not-allowed data-disabled:opacity-60",
        variants[variant],
        className as string | undefined,
      )}
    >
      {busy && <Spinner small />}
      {children as ReactNode}
    </HButton>
  );
}

export function Spinner({ small, label }: { small?: boolean; label?: string }) {
  return (
    <span role={label ? "status" : undefined} className="inline-flex items-center gap-2">
      <span
        aria-hidden="true"
        className={cx("inline-block animate-spin rounded-full border-2 border-current border-r-transparent", small ? "size-4" : "size-6")}
      />
      {label && <span className="text-sm text-slate-600">{label}</span>}
    </span>
  );
}

export function Alert({ kind = "error", children, title }: { kind?: "error" | "info" | "success"; children: ReactNode; title?: string }) {
  const styles = {
    error: "border-red-200 bg-red-50 text-red-800",
    info: "border-sky-200 bg-sky-50 text-sky-900",
    success: "border-emerald-200 bg-emerald-50 text-emerald-900",
  }[kind];
  return (
    <div role={kind === "error" ? "alert" : "status"} className={cx("rounded-md border px-4 py-3 text-sm", styles)}>
      {title && <p className="font-semibold">{title}</p>}
      <div>{children}</div>
    </div>
  );
}

export function PageLoading() {
  return (
    <div className="flex min-h-[40vh] items-center justify-center">
      <Spinner label="Loading…" />
    </div>
  );
}
