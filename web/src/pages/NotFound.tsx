import { PageHeader } from "../components/ui";
import { Link } from "../lib/router";

export default function NotFound() {
  return (
    <div>
      <PageHeader title="Page not found" description="There is nothing at this address." />
      <Link to="/" className="font-semibold text-sky-800 underline">
        Go to the dashboard
      </Link>
    </div>
  );
}
